-- The personal library: every photo and text a person imported, with the
-- facts later stages need (dimensions, capture time, text) and their labels.

CREATE TABLE items (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('photo', 'text')),
    -- sha256 of the file's bytes, lower-case hex: the item's identity.
    sha256      TEXT    NOT NULL UNIQUE CHECK (length(sha256) = 64),
    -- Where the original was last seen; originals are never modified.
    path        TEXT    NOT NULL,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes > 0),
    media_type  TEXT    NOT NULL,
    -- Photos: displayed dimensions (EXIF orientation applied).
    width       INTEGER CHECK (width > 0),
    height      INTEGER CHECK (height > 0),
    -- Photos: EXIF capture time, ISO 8601, with offset when the camera wrote one.
    captured_at TEXT,
    -- Photos: thumbnail file, relative to the library folder.
    thumbnail   TEXT,
    -- Text: length in Unicode scalar values.
    text_chars  INTEGER CHECK (text_chars >= 0),
    imported_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (kind <> 'photo' OR (width IS NOT NULL AND height IS NOT NULL AND thumbnail IS NOT NULL)),
    CHECK (kind <> 'text' OR text_chars IS NOT NULL)
);
CREATE INDEX items_by_kind ON items (kind, id);

-- Text bodies live apart so that listing items never reads them.
CREATE TABLE item_texts (
    item_id INTEGER PRIMARY KEY REFERENCES items (id) ON DELETE CASCADE,
    body    TEXT NOT NULL
);

CREATE TABLE labels (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE item_labels (
    item_id  INTEGER NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    label_id INTEGER NOT NULL REFERENCES labels (id) ON DELETE CASCADE,
    added_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (item_id, label_id)
) WITHOUT ROWID;
CREATE INDEX item_labels_by_label ON item_labels (label_id, item_id);
