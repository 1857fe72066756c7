-- Service clients (issue 19): platform services that authenticate with OAuth 2.0 client
-- credentials. The secret is stored only as a keyed hash (HMAC-SHA256 under a key derived
-- from the master key): it is 256 random bits, so there is nothing to guess and no need for
-- a slow hash, and a database copy alone cannot check a candidate secret. `scopes` is the
-- space-delimited list the client may ask for; a revoked client gets no token.
CREATE TABLE service_clients (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
