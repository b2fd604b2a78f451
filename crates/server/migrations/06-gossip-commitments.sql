-- Gossip of devices' signed upload commitments: what each device signed
-- that it uploaded in a round (the SHA-256 of its exact upload bytes and
-- the round's parameter digest), so every device can compare the log's
-- participation entries with the devices' own word. One row per device
-- and round, the first posted kept; only commitments whose signature
-- verifies under the device's enrolled key are stored (checked before
-- insert).

CREATE TABLE gossip_commitments (
    federation_id  TEXT    NOT NULL REFERENCES federations (id),
    round          INTEGER NOT NULL CHECK (round >= 1),
    device_id      TEXT    NOT NULL REFERENCES devices (id),
    upload_sha256  BLOB    NOT NULL CHECK (length(upload_sha256) = 32),
    round_digest   BLOB    NOT NULL CHECK (length(round_digest) = 32),
    signature      BLOB    NOT NULL CHECK (length(signature) = 64),
    received_at_ms INTEGER NOT NULL,
    PRIMARY KEY (federation_id, round, device_id)
) STRICT;
