-- The photo taggers that photo runs produce, as `adapters` records what
-- text runs produce: a tagger's lineage is items -> run -> tagger, by hash.
CREATE TABLE photo_taggers (
    id           INTEGER PRIMARY KEY,
    -- One tagger per run; a run resumed after a crash records it again.
    run_id       INTEGER NOT NULL UNIQUE REFERENCES runs (id),
    -- The network its embeddings come from: the base model, or the base
    -- with the run's fine-tuned tail (the hash of both).
    model_sha256 TEXT    NOT NULL CHECK (length(model_sha256) = 64),
    -- The head file's bytes.
    sha256       TEXT    NOT NULL CHECK (length(sha256) = 64),
    -- JSON array of the labels it suggests, in output order.
    labels       TEXT    NOT NULL,
    -- The head file, relative to the library folder.
    path         TEXT    NOT NULL,
    created_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX photo_taggers_by_model ON photo_taggers (model_sha256, id);
