-- Enrolment texts sent per UTC day, against SMS pumping (see domain::sms_quota). A counter is
-- named by its scope: `number:<hex>` with a keyed hash of the destination number (never the
-- number itself, which is personal data) or `account:<user id>`. Counted in one write
-- transaction with an upsert, so concurrent requests cannot both take the last text.
CREATE TABLE sms_send_counts (
    scope  TEXT NOT NULL,
    day    INTEGER NOT NULL,
    count  INTEGER NOT NULL,
    PRIMARY KEY (scope, day)
);
