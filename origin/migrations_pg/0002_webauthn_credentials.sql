-- Passkeys and security keys (WebAuthn); see the SQLite migration 0010 for the columns.
CREATE TABLE webauthn_credentials (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_handle      TEXT NOT NULL,
    passkey          TEXT NOT NULL,
    counter          BIGINT NOT NULL,
    aaguid           TEXT NOT NULL,
    backup_eligible  BOOLEAN NOT NULL,
    backup_state     BOOLEAN NOT NULL,
    discoverable     BOOLEAN NOT NULL,
    transports       TEXT NOT NULL,
    label            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    last_used_at     BIGINT
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);
