-- Sentence embeddings of notes, for Ask's semantic search ("notes about
-- taxes"): computed lazily by the embedding model the first time a search
-- needs them, and kept here so the next search only embeds what is new.
--
-- Keyed by the item and the model (the sha256 of its weights, so a new
-- model never reads an old model's vectors). text_sha256 is the sha256 of
-- the text that was embedded: when a note's text changes, the stored
-- vector no longer matches it and is computed again. Deleting an item
-- deletes its vectors. (Number 10: it comes after 09-ask-runs.sql, from
-- the Ask translator's branch.)
CREATE TABLE note_embeddings (
    item_id      INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    model_sha256 TEXT    NOT NULL CHECK (length(model_sha256) = 64),
    -- The model's name, for people reading the table (all-minilm-l6-v2).
    model        TEXT    NOT NULL,
    text_sha256  TEXT    NOT NULL CHECK (length(text_sha256) = 64),
    -- Little-endian f32 values, unit length.
    vector       BLOB    NOT NULL,
    dim          INTEGER NOT NULL CHECK (dim > 0),
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (item_id, model_sha256),
    CHECK (length(vector) = 4 * dim)
) WITHOUT ROWID;
