-- Ask runs: a LoRA adapter trained on the person's corrected question and
-- query pairs, used only to translate questions. Recorded beside the other
-- runs so lineage and the adapter list stay one table each. The CHECK on
-- kind is widened the documented way (new table, copy, drop, rename) while
-- foreign keys are off, and checked afterwards (see db.rs).

CREATE TABLE runs_v9 (
    id                   INTEGER PRIMARY KEY,
    kind                 TEXT    NOT NULL CHECK (kind IN ('text', 'photos', 'federated', 'ask')),
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
    updated_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    items_root           TEXT    CHECK (items_root IS NULL OR length(items_root) = 64),
    parent_sha256        TEXT    CHECK (parent_sha256 IS NULL OR length(parent_sha256) = 64)
);

INSERT INTO runs_v9 (id, kind, status, base_model, base_model_sha256, config, label, item_count,
                     token_count, device, steps_done, train_loss, base_validation_loss,
                     validation_loss, tokens_per_second, error, started_at, updated_at,
                     items_root, parent_sha256)
SELECT id, kind, status, base_model, base_model_sha256, config, label, item_count,
       token_count, device, steps_done, train_loss, base_validation_loss,
       validation_loss, tokens_per_second, error, started_at, updated_at,
       items_root, parent_sha256
FROM runs;

DROP TABLE runs;
ALTER TABLE runs_v9 RENAME TO runs;
