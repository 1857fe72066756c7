-- Users provisioned in bulk get an activation token instead of a password: they choose their
-- password when they activate. Only the token's hash is kept; unactivated accounts are removed
-- by the cleanup job after their deadline.
CREATE TABLE activations (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   TEXT NOT NULL UNIQUE,
    expires_at   INTEGER NOT NULL
);
