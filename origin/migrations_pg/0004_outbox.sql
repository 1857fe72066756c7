-- PostgreSQL twin of ../migrations/0012_outbox.sql. The durable outbox: every email and SMS is stored here before any attempt to send it, in the
-- same transaction as what caused it where that is one transaction (a reset code, a password
-- reset's notice). A background dispatcher claims due messages (claimed_until: a lease, so two
-- origins never try one message at once), sends them, and marks them sent; a failure sets the
-- next attempt's time (backoff, see domain::delivery). The message (address, subject, text,
-- code) is sealed with the user's data key: the table holds no address in clear, and erasing
-- the user's key makes a pending message unreadable. The id is the message's idempotency key
-- (the SMTP Message-ID, the SMS provider's Idempotency-Key).
CREATE TABLE outbox (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    channel          TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
    message_sealed   BYTEA NOT NULL,
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    claimed_until    BIGINT,
    sent_at          BIGINT,
    failed_at        BIGINT,
    -- The kind of the last failure (never the provider's text, which may quote the address).
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_user ON outbox (user_id);
CREATE INDEX outbox_sent ON outbox (sent_at);
CREATE INDEX outbox_failed ON outbox (failed_at);
