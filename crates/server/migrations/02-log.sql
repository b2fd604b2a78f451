-- The transparency log (RFC 9162 Merkle tree, see hearth-ledger): what the
-- server did, in a form devices can check. Every entry is appended in the
-- same transaction as the change it records, so the log can neither miss
-- nor invent one.
--
-- log_nodes holds the hashes of complete subtrees, (level, idx) being the
-- subtree of 2^level leaves starting at leaf idx * 2^level; level 0 holds
-- the leaf hashes. log_leaves holds each entry's exact bytes (what is
-- hashed) plus a few columns copied out of them for lookups; devices check
-- the bytes, never those columns. log_heads keeps every tree head the log
-- key signed, so heads survive restarts and their timestamps never go back.

CREATE TABLE log_nodes (
    level INTEGER NOT NULL CHECK (level BETWEEN 0 AND 63),
    idx   INTEGER NOT NULL CHECK (idx >= 0),
    hash  BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;
-- Inclusion proofs by leaf hash (a device knows its commitment, not its
-- index).
CREATE INDEX log_leaf_hashes ON log_nodes (hash) WHERE level = 0;

CREATE TABLE log_leaves (
    idx           INTEGER PRIMARY KEY CHECK (idx >= 0),
    leaf_data     BLOB    NOT NULL,
    at_ms         INTEGER NOT NULL,
    kind          TEXT    NOT NULL,
    federation_id TEXT    NOT NULL,
    round         INTEGER,
    device_id     TEXT,
    version       INTEGER
) STRICT;
-- One commitment per device and round, one publication per version.
CREATE UNIQUE INDEX log_one_commitment ON log_leaves (federation_id, round, device_id)
    WHERE kind = 'round_participation';
CREATE UNIQUE INDEX log_one_publication ON log_leaves (federation_id, version)
    WHERE kind = 'adapter_published';

CREATE TABLE log_heads (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    size         INTEGER NOT NULL CHECK (size >= 0),
    root         BLOB    NOT NULL CHECK (length(root) = 32),
    timestamp_ms INTEGER NOT NULL,
    signature    BLOB    NOT NULL CHECK (length(signature) = 64)
) STRICT;

-- Append-only, enforced by the database: nothing is rewritten or removed,
-- and rows arrive strictly in order (no gaps, no slot written twice). The
-- checks use max() over the primary key, which SQLite answers from the
-- index in O(log n), so appending stays cheap at millions of entries.
CREATE TRIGGER log_nodes_in_order BEFORE INSERT ON log_nodes
WHEN NEW.idx != (SELECT coalesce(max(idx) + 1, 0) FROM log_nodes WHERE level = NEW.level)
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only (node out of order)');
END;
CREATE TRIGGER log_nodes_no_update BEFORE UPDATE ON log_nodes
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;
CREATE TRIGGER log_nodes_no_delete BEFORE DELETE ON log_nodes
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;

CREATE TRIGGER log_leaves_in_order BEFORE INSERT ON log_leaves
WHEN NEW.idx != (SELECT coalesce(max(idx) + 1, 0) FROM log_leaves)
  OR NEW.idx >= (SELECT coalesce(max(idx) + 1, 0) FROM log_nodes WHERE level = 0)
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only (entry out of order)');
END;
CREATE TRIGGER log_leaves_no_update BEFORE UPDATE ON log_leaves
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;
CREATE TRIGGER log_leaves_no_delete BEFORE DELETE ON log_leaves
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;

CREATE TRIGGER log_heads_no_shrink BEFORE INSERT ON log_heads
WHEN NEW.size < coalesce((SELECT size FROM log_heads ORDER BY seq DESC LIMIT 1), 0)
  OR NEW.timestamp_ms < coalesce((SELECT timestamp_ms FROM log_heads ORDER BY seq DESC LIMIT 1), 0)
  OR NEW.size > (SELECT coalesce(max(idx) + 1, 0) FROM log_nodes WHERE level = 0)
BEGIN
    SELECT RAISE(ABORT, 'signed tree heads never go back');
END;
CREATE TRIGGER log_heads_no_update BEFORE UPDATE ON log_heads
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;
CREATE TRIGGER log_heads_no_delete BEFORE DELETE ON log_heads
BEGIN
    SELECT RAISE(ABORT, 'the transparency log is append-only');
END;
