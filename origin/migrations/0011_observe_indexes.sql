-- The dashboard's and /metrics' reads by time: the last hour of events and signups, and the
-- latest security events of every user (the existing indexes lead with the user or the kind).
CREATE INDEX events_at ON events (at);
CREATE INDEX users_created_at ON users (created_at);
CREATE INDEX security_events_at ON security_events (at);
