-- The PostgreSQL schema: the same tables, columns and constraints as the SQLite migrations in
-- ../migrations (read them for what each table is for), in one migration because it starts
-- from the SQLite schema's present state. BYTEA for sealed blobs, BIGINT for Unix millis,
-- BIGSERIAL where SQLite has INTEGER PRIMARY KEY AUTOINCREMENT (ids keep their order, and
-- `origin migrate-sqlite-to-postgres` copies them and then moves each sequence past them).

CREATE TABLE edge_nonces (
    nonce   TEXT PRIMARY KEY NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX edge_nonces_seen_at ON edge_nonces (seen_at);

CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,
    email_index         BYTEA NOT NULL UNIQUE,
    email_sealed        BYTEA NOT NULL,
    data_key_sealed     BYTEA NOT NULL,
    data_key_master_id  TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    tier                TEXT NOT NULL CHECK (tier IN ('free', 'premium', 'enterprise', 'vip')),
    email_verified      BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash       TEXT,
    profile_sealed      BYTEA NOT NULL,
    version             BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    last_login_at       BIGINT,
    disabled_at         BIGINT
);

CREATE TABLE audit_log (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, at);
-- tier_changes() reads by action.
CREATE INDEX audit_log_action ON audit_log (action, at);

CREATE TABLE login_history (
    id       BIGSERIAL PRIMARY KEY,
    user_id  TEXT NOT NULL REFERENCES users (id),
    context  TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX login_history_user ON login_history (user_id, at);

CREATE TABLE auth_state (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX auth_state_expiry ON auth_state (expires_at);

CREATE TABLE security_events (
    id       BIGSERIAL PRIMARY KEY,
    user_id  TEXT NOT NULL REFERENCES users (id),
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX security_events_user ON security_events (user_id, at);

CREATE TABLE mfa_totp (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    secret_sealed  BYTEA NOT NULL,
    confirmed_at   BIGINT,
    last_step      BIGINT
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE events (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT,
    kind         TEXT NOT NULL,
    class        TEXT,
    at           BIGINT NOT NULL,
    data         TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);
CREATE INDEX events_user_at ON events (user_id, at);
CREATE INDEX events_kind_at ON events (kind, at);

CREATE TABLE models (
    name        TEXT PRIMARY KEY NOT NULL,
    trained_at  BIGINT NOT NULL,
    model       TEXT NOT NULL
);

CREATE TABLE activations (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    expires_at   BIGINT NOT NULL
);

CREATE TABLE job_runs (
    id           BIGSERIAL PRIMARY KEY,
    job          TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    ok           BOOLEAN,
    summary      TEXT
);

CREATE TABLE mfa_sms (
    user_id       TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    phone_sealed  BYTEA NOT NULL,
    confirmed_at  BIGINT NOT NULL
);

CREATE TABLE sms_send_counts (
    scope  TEXT NOT NULL,
    day    BIGINT NOT NULL,
    count  BIGINT NOT NULL,
    PRIMARY KEY (scope, day)
);
