-- Every run of an automation job: who started it (cli, schedule, api), when, and its summary.
CREATE TABLE job_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job          TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    ok           INTEGER,
    summary      TEXT
);
