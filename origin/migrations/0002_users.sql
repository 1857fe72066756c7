-- Users. Personal data never appears in clear: the email is stored sealed (email_sealed) and
-- found through its blind index (email_index, an HMAC under a key derived from the master
-- key); the profile, which holds the display name, is stored sealed as JSON. Both are sealed
-- with the user's data key, stored wrapped by the master key named in data_key_master_id.
CREATE TABLE users (
    id                  TEXT PRIMARY KEY NOT NULL,
    email_index         BLOB NOT NULL UNIQUE,
    email_sealed        BLOB NOT NULL,
    data_key_sealed     BLOB NOT NULL,
    data_key_master_id  TEXT NOT NULL,
    role                TEXT NOT NULL CHECK (role IN ('user', 'admin')),
    tier                TEXT NOT NULL CHECK (tier IN ('free', 'premium', 'enterprise', 'vip')),
    email_verified      INTEGER NOT NULL DEFAULT 0,
    password_hash       TEXT,
    profile_sealed      BLOB NOT NULL,
    version             INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    last_login_at       INTEGER,
    disabled_at         INTEGER
);

-- Every change of tier or role, and every administrative action: who, what, when.
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL REFERENCES users (id),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    old_value   TEXT,
    new_value   TEXT,
    at          INTEGER NOT NULL
);
CREATE INDEX audit_log_user ON audit_log (user_id, at);
