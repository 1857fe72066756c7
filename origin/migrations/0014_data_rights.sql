-- Data rights (issue 13): consents, export archives and erasures requested during their grace
-- period. Every row names its user and goes with it (ON DELETE CASCADE) when the user is erased.

-- The current state of each consent purpose a user (or a Sec-GPC signal) set; purposes never
-- set are at their default (domain::rights). Every change is also an audit-log entry.
CREATE TABLE consents (
    user_id         TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose         TEXT NOT NULL,
    granted         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    source          TEXT NOT NULL,
    policy_version  TEXT NOT NULL,
    PRIMARY KEY (user_id, purpose)
);

-- Export jobs and their archives. The ZIP is sealed with the user's data key (bound to the
-- export's id), so destroying the key makes any copy of it unreadable, backups included.
CREATE TABLE exports (
    id               TEXT PRIMARY KEY NOT NULL,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    requested_by     TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    ready_at         INTEGER,
    expires_at       INTEGER,
    downloads        INTEGER NOT NULL DEFAULT 0,
    archive_sealed   BLOB
);
CREATE INDEX exports_user ON exports (user_id, created_at);

-- An erasure asked for and not yet run: the account cannot log in until it is cancelled.
CREATE TABLE erasure_requests (
    user_id       TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    asked_at      INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    requested_by  TEXT NOT NULL
);
CREATE INDEX erasure_requests_due ON erasure_requests (due_at);
