-- Models the analytics job trains (the churn model), newest kept per name.
CREATE TABLE models (
    name        TEXT PRIMARY KEY NOT NULL,
    trained_at  INTEGER NOT NULL,
    model       TEXT NOT NULL
);
