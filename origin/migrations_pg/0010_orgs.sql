-- Organizations (issue 19): teams on the enterprise tiers. A user belongs to one organization
-- at most (org_members.user_id is unique); members' rows, invitations and the audit entries
-- about a member name that user in `user_id` and go with them when they are erased.

CREATE TABLE orgs (
    id          TEXT PRIMARY KEY NOT NULL,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    tier        TEXT NOT NULL,
    seats       BIGINT NOT NULL,
    -- domain::org::OrgPolicies as JSON.
    policies    TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE org_members (
    org_id     TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

-- An invitation: only its token's SHA-256 is stored. The address is kept as the keyring's
-- blind index (what an acceptance compares) and sealed under the inviter's data key (what the
-- organization's admins see); `user_id` is the inviter. Pending invitations hold seats.
CREATE TABLE org_invitations (
    token_hash    TEXT PRIMARY KEY NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email_index   BYTEA NOT NULL,
    email_sealed  BYTEA NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    accepted_at   BIGINT,
    accepted_by   TEXT,
    revoked_at    BIGINT
);
CREATE INDEX org_invitations_pending ON org_invitations (org_id, expires_at)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;
CREATE INDEX org_invitations_user ON org_invitations (user_id);

-- Every change of an organization, readable by its admins. `user_id` is the member the entry
-- is about (if any); entries name changes, never personal data.
CREATE TABLE org_audit (
    id       BIGSERIAL PRIMARY KEY,
    org_id   TEXT NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    user_id  TEXT,
    detail   TEXT,
    at       BIGINT NOT NULL
);
CREATE INDEX org_audit_org ON org_audit (org_id, id);
CREATE INDEX org_audit_user ON org_audit (user_id);
