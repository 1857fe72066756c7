-- Nonces of signed edge requests, remembered for as long as their timestamp would still be
-- accepted, so that a captured request cannot be replayed (even across an origin restart).
CREATE TABLE edge_nonces (
    nonce   TEXT PRIMARY KEY NOT NULL,
    seen_at INTEGER NOT NULL
);
CREATE INDEX edge_nonces_seen_at ON edge_nonces (seen_at);
