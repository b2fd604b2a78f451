-- Federation, opt-in: the federations this device joined (none by default:
-- with no active membership nothing ever leaves the device), and every
-- upload it made, so the person can see what was shared and how much of
-- their privacy budget it spent.

CREATE TABLE fed_memberships (
    id             INTEGER PRIMARY KEY,
    server_url     TEXT    NOT NULL,
    federation_id  TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    -- The client's membership record (pinned certificate and keys, log
    -- watcher state), JSON. Secret keys are not here: they live in a file
    -- readable only by the person (see fed.rs).
    record         TEXT    NOT NULL,
    -- (epsilon, delta) the person allows in total for this federation.
    epsilon_budget REAL    NOT NULL CHECK (epsilon_budget > 0),
    delta          REAL    NOT NULL CHECK (delta > 0 AND delta < 1),
    -- Participation policy (hours, power, idle), JSON.
    policy         TEXT    NOT NULL,
    joined_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    left_at        TEXT
);
-- At most one active membership per federation.
CREATE UNIQUE INDEX fed_memberships_active ON fed_memberships (server_url, federation_id)
    WHERE left_at IS NULL;

CREATE TABLE fed_uploads (
    id             INTEGER PRIMARY KEY,
    membership_id  INTEGER NOT NULL REFERENCES fed_memberships (id) ON DELETE CASCADE,
    round          INTEGER NOT NULL CHECK (round >= 0),
    bytes_sent     INTEGER NOT NULL CHECK (bytes_sent >= 0),
    bytes_received INTEGER NOT NULL CHECK (bytes_received >= 0),
    -- zCDP rho this upload spent, and the epsilon it means alone.
    rho            REAL    NOT NULL CHECK (rho >= 0),
    epsilon        REAL    NOT NULL CHECK (epsilon >= 0),
    -- sha256 of the exact masked bytes uploaded (the log commitment).
    upload_sha256  TEXT    NOT NULL CHECK (length(upload_sha256) = 64),
    global_version INTEGER,
    run_id         INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    uploaded_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (membership_id, round)
);
