-- Single-use codes sent by email: password reset (30 minutes) and email verification at
-- signup (72 hours). Only the code's SHA-256 is stored (the code is 256 random bits, so a
-- plain hash suffices); using one is a conditional UPDATE, so a code works once.
CREATE TABLE one_time_codes (
    code_hash   TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX one_time_codes_user ON one_time_codes (user_id, purpose, created_at);
CREATE INDEX one_time_codes_expiry ON one_time_codes (expires_at);

-- Retention (domain::retention) deletes by age: these make its deletes indexed.
CREATE INDEX login_history_at ON login_history (at);
CREATE INDEX IF NOT EXISTS security_events_at ON security_events (at); -- also made by 0011 (observe)
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX job_runs_started ON job_runs (started_at);
