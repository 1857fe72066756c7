-- Passkeys and security keys (WebAuthn). `passkey` is webauthn-rs's serialised credential: the
-- public key (COSE) and its algorithm, the counter and flags it verifies against. The columns
-- beside it are what the account page lists and what the checks of each use compare
-- (`counter` moves by compare-and-set; `backup_eligible` never changes). `user_handle` is the
-- random id authenticators store for the account (the same on all of a user's credentials).
CREATE TABLE webauthn_credentials (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_handle      TEXT NOT NULL,
    passkey          TEXT NOT NULL,
    counter          INTEGER NOT NULL,
    aaguid           TEXT NOT NULL,
    backup_eligible  INTEGER NOT NULL,
    backup_state     INTEGER NOT NULL,
    discoverable     INTEGER NOT NULL,
    transports       TEXT NOT NULL,
    label            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    last_used_at     INTEGER
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials (user_id);
