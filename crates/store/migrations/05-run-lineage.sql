-- Lineage: each run's commitment to the items it trained on (the Merkle
-- root of their sorted sha256s, RFC 9162 hashing, see hearth-ledger) and
-- its parent (the global adapter a federated round started from). Runs
-- recorded before this migration get their root on first use from
-- run_items.

ALTER TABLE runs ADD COLUMN items_root TEXT CHECK (items_root IS NULL OR length(items_root) = 64);
ALTER TABLE runs ADD COLUMN parent_sha256 TEXT CHECK (parent_sha256 IS NULL OR length(parent_sha256) = 64);
