-- Ask: questions about the library answered by checked queries.
--
-- Full-text search over notes (SQLite FTS5). An external-content index over
-- item_texts: the bodies are stored once, and triggers keep the index in
-- step with every insert, update and delete (including the cascade when an
-- item is removed), inside the transaction that changes the text. Porter
-- stemming, so "mentions" finds "mention"; diacritics folded.
CREATE VIRTUAL TABLE note_fts USING fts5 (
    body,
    content = 'item_texts',
    content_rowid = 'item_id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
INSERT INTO note_fts (note_fts) VALUES ('rebuild');

CREATE TRIGGER item_texts_fts_insert AFTER INSERT ON item_texts BEGIN
    INSERT INTO note_fts (rowid, body) VALUES (new.item_id, new.body);
END;
CREATE TRIGGER item_texts_fts_delete AFTER DELETE ON item_texts BEGIN
    INSERT INTO note_fts (note_fts, rowid, body) VALUES ('delete', old.item_id, old.body);
END;
CREATE TRIGGER item_texts_fts_update AFTER UPDATE ON item_texts BEGIN
    INSERT INTO note_fts (note_fts, rowid, body) VALUES ('delete', old.item_id, old.body);
    INSERT INTO note_fts (rowid, body) VALUES (new.item_id, new.body);
END;

-- Every answered ask: the question (when a person asked in words; NULL
-- when they wrote the query themselves) and the query that ran, in its
-- canonical form.
CREATE TABLE asks (
    id         INTEGER PRIMARY KEY,
    question   TEXT,
    query      TEXT NOT NULL,
    asked_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- A person's correction of an ask: the query it should have been (checked
-- before it is stored). With the ask's question, these pairs are the
-- training data for the translation.
CREATE TABLE ask_corrections (
    id           INTEGER PRIMARY KEY,
    ask_id       INTEGER NOT NULL REFERENCES asks (id) ON DELETE CASCADE,
    query        TEXT NOT NULL,
    corrected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX ask_corrections_by_ask ON ask_corrections (ask_id, id);
