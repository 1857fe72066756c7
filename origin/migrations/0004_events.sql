-- Behavioural events from the edge. Delivery is at-least-once (a queue that retries); the
-- primary key on the edge's event id makes storage exactly-once.
CREATE TABLE events (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT,
    kind         TEXT NOT NULL,
    class        TEXT,
    at           INTEGER NOT NULL,
    data         TEXT NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE INDEX events_user_at ON events (user_id, at);
CREATE INDEX events_kind_at ON events (kind, at);
