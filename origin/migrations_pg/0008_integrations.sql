-- The integration hub (issue 15): one row per connected service of a user. The provider's
-- tokens (and the account name it reported) are sealed with the user's data key, bound to the
-- row (`<user>/integration/<service>`), so an erasure's crypto-shredding covers them; they are
-- never answered by any API. `token_version` makes a refresh a compare-and-set, so two
-- refresh jobs racing cannot both spend one refresh token.
CREATE TABLE integrations (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service         TEXT NOT NULL,
    status          TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    tokens_sealed   BYTEA,
    account_sealed  BYTEA,
    expires_at      BIGINT,
    token_version   BIGINT NOT NULL DEFAULT 0,
    connected_at    BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    last_sync_at    BIGINT,
    last_error      TEXT,
    sync_cursor     TEXT NOT NULL DEFAULT '{}',
    retry_at        BIGINT,
    PRIMARY KEY (user_id, service)
);
-- The refresh job's scan: active integrations by expiry.
CREATE INDEX integrations_expiry ON integrations (status, expires_at);
-- The sync job's scan: one service's active integrations.
CREATE INDEX integrations_service ON integrations (service, status);
