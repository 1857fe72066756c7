-- Metering (issue 19): what each user uses of each metered resource, and the usage reports
-- already answered, by the reporting client's idempotency key, so a retry gets the first
-- answer and is counted once. Both name their user and go with it when it is erased.
CREATE TABLE usage_counters (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,
    used        BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, resource)
);

-- One row per report answered: the outcome (admitted, the total after it or the limit that
-- refused it) is what a retry with the same key is answered. Kept 24 hours.
CREATE TABLE usage_reports (
    client_id        TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    resource         TEXT NOT NULL,
    delta            BIGINT NOT NULL,
    admitted         BOOLEAN NOT NULL,
    used             BIGINT NOT NULL,
    usage_limit      BIGINT,
    created_at       BIGINT NOT NULL,
    PRIMARY KEY (client_id, idempotency_key)
);
CREATE INDEX usage_reports_user ON usage_reports (user_id, created_at);
CREATE INDEX usage_reports_created ON usage_reports (created_at);
