-- Gossip of signed tree heads: each enrolled device's latest verified head
-- of the transparency log, per federation, so devices can compare what
-- they were shown (a log showing two devices two histories is caught by
-- their heads). One row per device, replaced by its next post; only heads
-- that verify under the log key are stored (checked before insert).

CREATE TABLE log_gossip (
    federation_id  TEXT    NOT NULL REFERENCES federations (id),
    device_id      TEXT    NOT NULL REFERENCES devices (id),
    size           INTEGER NOT NULL CHECK (size >= 0),
    root           BLOB    NOT NULL CHECK (length(root) = 32),
    timestamp_ms   INTEGER NOT NULL,
    signature      BLOB    NOT NULL CHECK (length(signature) = 64),
    -- Whether the head is of this server's own log (same root at its size).
    matches_log    INTEGER NOT NULL CHECK (matches_log IN (0, 1)),
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (federation_id, device_id)
) STRICT;
CREATE INDEX log_gossip_recent ON log_gossip (federation_id, received_at_ms);
