-- Personalisation (issue 17): the catalogue recommendations come from, each user's taste
-- profile (with the cursor of the listening events it has learnt), their current mood, and
-- their personal re-ranking model. Every per-user row goes with its user (ON DELETE CASCADE,
-- and ERASED_TABLES).

CREATE TABLE catalogue_tracks (
    id          TEXT PRIMARY KEY NOT NULL,
    title       TEXT NOT NULL,
    artist      TEXT NOT NULL,
    genre       TEXT NOT NULL,
    -- domain::listening::AudioFeatures, JSON.
    features    TEXT NOT NULL,
    popularity  INTEGER NOT NULL
);

-- domain::personalization::TasteProfile as JSON; the cursor is the (at, id) of the last
-- listening event learnt, so the job reads only newer ones.
CREATE TABLE taste_profiles (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile     TEXT NOT NULL,
    cursor_at   INTEGER NOT NULL,
    cursor_id   TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- The current mood (domain::personalization::MoodReading, JSON), only while mood detection
-- and the personalisation consent hold: turning either off deletes the row.
CREATE TABLE moods (
    user_id      TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reading      TEXT NOT NULL,
    detected_at  INTEGER NOT NULL
);

CREATE TABLE custom_models (
    user_id     TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model       TEXT NOT NULL,
    trained_at  INTEGER NOT NULL
);

-- Listening events by kind and time, for the profile job's cursor.
CREATE INDEX events_kind_at_id ON events (kind, at, id);
