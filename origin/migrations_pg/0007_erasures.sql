-- What remains of an erased user: no personal data. `subject` is a keyed hash of the user id
-- (HMAC under a key derived from the master key), so a later question "was this id erased?"
-- can be answered by who holds the key, and nobody can go from the record to the person.
CREATE TABLE erasures (
    subject       TEXT PRIMARY KEY NOT NULL,
    asked_at      BIGINT NOT NULL,
    ran_at        BIGINT NOT NULL,
    requested_by  TEXT NOT NULL,
    purged        TEXT NOT NULL
);

-- Erasures the edge has still to apply (the KV profile entry, the Durable Object's storage).
-- The edge applies them on the erasure call's answer, or its scheduled job picks them up;
-- the row goes once the edge confirms, and with it the last trace of the id.
CREATE TABLE edge_wipes (
    user_id    TEXT PRIMARY KEY NOT NULL,
    erased_at  BIGINT NOT NULL
);

-- A child's account (under 13) waits for a parent's verifiable consent: the single-use link's
-- token is kept only as its hash, for 72 hours. Until then the account is disabled; a refusal
-- or an expiry erases it.
CREATE TABLE parental_consents (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT NOT NULL UNIQUE,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX parental_consents_expiry ON parental_consents (expires_at);
