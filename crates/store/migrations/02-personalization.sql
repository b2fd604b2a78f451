-- Personalization: training runs, the items each trained on (lineage), and
-- the adapters they produced or that were imported.

CREATE TABLE runs (
    id                   INTEGER PRIMARY KEY,
    kind                 TEXT    NOT NULL CHECK (kind IN ('text')),
    status               TEXT    NOT NULL CHECK (status IN ('running', 'paused', 'completed', 'early_stopped', 'failed')),
    -- The base model as given (registry name or path) and its sha256.
    base_model           TEXT    NOT NULL,
    base_model_sha256    TEXT    NOT NULL,
    -- The full training configuration, JSON.
    config               TEXT    NOT NULL,
    -- Data selection: text items with this label, or every text when NULL.
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

-- By content hash, so lineage outlives the removal of an item.
CREATE TABLE run_items (
    run_id      INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    item_sha256 TEXT    NOT NULL CHECK (length(item_sha256) = 64),
    PRIMARY KEY (run_id, item_sha256)
) WITHOUT ROWID;
CREATE INDEX run_items_by_item ON run_items (item_sha256);

CREATE TABLE adapters (
    id                INTEGER PRIMARY KEY,
    name              TEXT    NOT NULL,
    run_id            INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    source            TEXT    NOT NULL CHECK (source IN ('trained', 'imported')),
    base_model        TEXT,
    -- NULL for imported adapters that do not record their base model.
    base_model_sha256 TEXT,
    -- sha256 of adapter_model.safetensors.
    sha256            TEXT    NOT NULL CHECK (length(sha256) = 64),
    rank              INTEGER NOT NULL CHECK (rank > 0),
    alpha             REAL    NOT NULL,
    targets           TEXT    NOT NULL,
    -- The PEFT folder, relative to the library folder.
    path              TEXT    NOT NULL UNIQUE,
    created_at        TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
