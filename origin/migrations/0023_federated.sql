-- Federated learning (issue 17): the shared skip predictor's current weights and round, with
-- the privacy accountant's state; each round's client updates until the round closes (then
-- they are deleted, aggregated or not); and a record of every closed round without any update.

CREATE TABLE federated_state (
    id          INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    round       INTEGER NOT NULL,
    -- The model's weights (five features, then the bias), JSON.
    weights     TEXT NOT NULL,
    -- domain::federated::Accountant, JSON.
    accountant  TEXT NOT NULL,
    opened_at   INTEGER NOT NULL
);

CREATE TABLE federated_updates (
    round    INTEGER NOT NULL,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delta    TEXT NOT NULL,
    at       INTEGER NOT NULL,
    PRIMARY KEY (round, user_id)
);

CREATE TABLE federated_rounds (
    round      INTEGER PRIMARY KEY NOT NULL,
    clients    INTEGER NOT NULL,
    eligible   INTEGER NOT NULL,
    -- `aggregated` or `too_few_clients`.
    outcome    TEXT NOT NULL,
    closed_at  INTEGER NOT NULL
);
