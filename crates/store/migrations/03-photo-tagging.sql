-- Photo personalization: cached embeddings per (photo, model), photos that
-- no longer decode, and the person's verdicts on suggested labels.

-- Keyed by content and model hashes, so a re-imported or moved photo keeps
-- its embedding and a new model never reads an old one.
CREATE TABLE photo_embeddings (
    item_sha256  TEXT    NOT NULL CHECK (length(item_sha256) = 64),
    model_sha256 TEXT    NOT NULL CHECK (length(model_sha256) = 64),
    -- Little-endian f32 values; NULL when the photo could not be decoded.
    vector       BLOB,
    dim          INTEGER NOT NULL CHECK (dim >= 0),
    error        TEXT,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (item_sha256, model_sha256),
    CHECK ((vector IS NULL) = (error IS NOT NULL)),
    CHECK (vector IS NULL OR length(vector) = 4 * dim)
) WITHOUT ROWID;

-- "Rex? yes / no": accepted suggestions also become labels; rejected ones
-- are negative examples for the next training.
CREATE TABLE label_feedback (
    item_id    INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    label_id   INTEGER NOT NULL REFERENCES labels (id) ON DELETE CASCADE,
    verdict    TEXT    NOT NULL CHECK (verdict IN ('accepted', 'rejected')),
    decided_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (item_id, label_id)
) WITHOUT ROWID;
