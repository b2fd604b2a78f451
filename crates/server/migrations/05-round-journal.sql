-- A round's journal: the messages an in-flight round accepted since its
-- state was last stored whole (`rounds.state`, the checkpoint), one row per
-- accepted message, in the order they were accepted. The state of the
-- round at `rounds.version` is the checkpoint with every journal entry
-- replayed onto it. Each entry is written in the transaction that bumps
-- the round's version (and, for a masked upload, that logs its
-- commitment), so an acknowledged message survives a kill; storing the
-- state whole again (a stage change, or the journal outgrowing the
-- checkpoint) or closing the round deletes the entries. Opaque to the
-- server, like the state.
CREATE TABLE round_journal (
    federation_id TEXT    NOT NULL,
    round         INTEGER NOT NULL,
    -- The round version the entry produced.
    version       INTEGER NOT NULL CHECK (version >= 2),
    entry         BLOB    NOT NULL,
    PRIMARY KEY (federation_id, round, version),
    FOREIGN KEY (federation_id, round) REFERENCES rounds (federation_id, round)
) STRICT;

-- A round's state as last stored whole, out of the `rounds` row: SQLite
-- rewrites a whole row on every UPDATE and walks a row's overflow pages to
-- reach the columns after a blob, so with the state inline every version
-- bump (every journaled message) and every summary read cost the state's
-- size. `rounds.state` is left empty.
CREATE TABLE round_states (
    federation_id TEXT    NOT NULL,
    round         INTEGER NOT NULL,
    state         BLOB    NOT NULL,
    PRIMARY KEY (federation_id, round),
    FOREIGN KEY (federation_id, round) REFERENCES rounds (federation_id, round)
) STRICT;
INSERT INTO round_states (federation_id, round, state)
    SELECT federation_id, round, state FROM rounds;
UPDATE rounds SET state = x'';
