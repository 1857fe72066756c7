-- The phone number a user confirmed for SMS codes, sealed with their data key like the rest
-- of their personal data.
CREATE TABLE mfa_sms (
    user_id       TEXT PRIMARY KEY NOT NULL REFERENCES users (id),
    phone_sealed  BLOB NOT NULL,
    confirmed_at  INTEGER NOT NULL
);
