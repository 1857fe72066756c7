-- Account protection: login history (for risk scoring), throttling counters and MFA
-- challenges (short-lived state), security events, TOTP factors and recovery codes.
CREATE TABLE login_history (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  TEXT NOT NULL REFERENCES users (id),
    context  TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX login_history_user ON login_history (user_id, at);

-- Short-lived state by key: softlock counters (`lock:…`) and MFA challenges (`challenge:…`).
CREATE TABLE auth_state (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX auth_state_expiry ON auth_state (expires_at);

CREATE TABLE security_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id  TEXT NOT NULL REFERENCES users (id),
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX security_events_user ON security_events (user_id, at);

-- The TOTP secret is sealed with the user's data key, like their personal data.
CREATE TABLE mfa_totp (
    user_id        TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    secret_sealed  BLOB NOT NULL,
    confirmed_at   INTEGER,
    last_step      INTEGER
);

CREATE TABLE recovery_codes (
    user_id    TEXT NOT NULL REFERENCES users (id),
    code_hash  TEXT NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
