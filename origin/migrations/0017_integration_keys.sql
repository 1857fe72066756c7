-- API keys of the local integrations (Ableton Live, Logic Pro, FL Studio): the desktop
-- plug-in presents one. Only the key's keyed hash is stored; the key is shown once. A key is
-- scoped (its scopes, space-separated) and revoked by setting `revoked_at`.
CREATE TABLE integration_keys (
    key_hash    TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service     TEXT NOT NULL,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX integration_keys_user ON integration_keys (user_id, service);
