-- Runs of every kind: photo taggers (and, with federation, rounds trained
-- on this device) are recorded beside text runs, so lineage has one table.
-- SQLite cannot alter a CHECK constraint: the table is rebuilt the
-- documented way (new table, copy, drop, rename) while foreign keys are
-- off, and checked afterwards (see db.rs).

CREATE TABLE runs_v4 (
    id                   INTEGER PRIMARY KEY,
    kind                 TEXT    NOT NULL CHECK (kind IN ('text', 'photos', 'federated')),
    status               TEXT    NOT NULL CHECK (status IN ('running', 'paused', 'completed', 'early_stopped', 'failed')),
    base_model           TEXT    NOT NULL,
    base_model_sha256    TEXT    NOT NULL,
    config               TEXT    NOT NULL,
    label                TEXT,
    item_count           INTEGER NOT NULL CHECK (item_count >= 0),
    token_count          INTEGER NOT NULL CHECK (token_count >= 0),
    device               TEXT    NOT NULL,
    steps_done           INTEGER NOT NULL DEFAULT 0,
    train_loss           REAL,
    base_validation_loss REAL,
    validation_loss      REAL,
    tokens_per_second    REAL,
    error                TEXT,
    started_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT INTO runs_v4 (id, kind, status, base_model, base_model_sha256, config, label, item_count,
                     token_count, device, steps_done, train_loss, base_validation_loss,
                     validation_loss, tokens_per_second, error, started_at, updated_at)
SELECT id, kind, status, base_model, base_model_sha256, config, label, item_count,
       token_count, device, steps_done, train_loss, base_validation_loss,
       validation_loss, tokens_per_second, error, started_at, updated_at
FROM runs;

DROP TABLE runs;
ALTER TABLE runs_v4 RENAME TO runs;
