-- The federation server's state: who may take part (invites, devices), what
-- each federation is doing (rounds, their cohorts, their opaque protocol
-- state), what it has published (global adapter versions) and an
-- append-only record of everything that changed (events).
--
-- Times are milliseconds since the Unix epoch (UTC); hashes are raw bytes.

CREATE TABLE federations (
    id                 TEXT    PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    -- The operator's [[federation]] entry as last loaded, canonical JSON,
    -- so the audit trail can say which settings a round ran under.
    config_json        TEXT    NOT NULL,
    config_sha256      BLOB    NOT NULL CHECK (length(config_sha256) = 32),
    created_at_ms      INTEGER NOT NULL,
    updated_at_ms      INTEGER NOT NULL,
    -- When the federation last had no round in flight: the start of the
    -- current gathering period (cohort forming waits on it).
    gathering_since_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    id              TEXT    PRIMARY KEY,
    federation_id   TEXT    NOT NULL REFERENCES federations (id),
    -- Ed25519 public key: every request the device makes is signed by it.
    public_key      BLOB    NOT NULL CHECK (length(public_key) = 32),
    enrolled_at_ms  INTEGER NOT NULL,
    last_checkin_ms INTEGER,
    -- Last check-in where the device said it could take part now (idle,
    -- charging, unmetered): only those count towards a cohort.
    last_eligible_ms INTEGER,
    revoked_at_ms   INTEGER,
    UNIQUE (federation_id, public_key)
) STRICT;
-- Cohort forming asks "who was eligible lately" on every idle check-in.
CREATE INDEX devices_by_eligibility ON devices (federation_id, last_eligible_ms)
    WHERE revoked_at_ms IS NULL;

CREATE TABLE invites (
    -- SHA-256 of the token: the token itself is shown once and never stored.
    token_sha256  BLOB    PRIMARY KEY CHECK (length(token_sha256) = 32),
    federation_id TEXT    NOT NULL REFERENCES federations (id),
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER,
    device_id     TEXT    REFERENCES devices (id),
    CHECK ((used_at_ms IS NULL) = (device_id IS NULL))
) STRICT;

CREATE TABLE rounds (
    federation_id     TEXT    NOT NULL REFERENCES federations (id),
    round             INTEGER NOT NULL CHECK (round >= 1),
    -- The protocol's stage and its serialized state machine: opaque here.
    stage             TEXT    NOT NULL,
    state             BLOB    NOT NULL,
    -- Bumped by every save; saves compare-and-swap on it.
    version           INTEGER NOT NULL CHECK (version >= 1),
    opened_at_ms      INTEGER NOT NULL,
    stage_deadline_ms INTEGER NOT NULL,
    updated_at_ms     INTEGER NOT NULL,
    -- NULL while in flight.
    outcome           TEXT    CHECK (outcome IN ('published', 'aborted')),
    outcome_detail    TEXT,
    closed_at_ms      INTEGER,
    PRIMARY KEY (federation_id, round),
    CHECK ((outcome IS NULL) = (closed_at_ms IS NULL))
) STRICT;
-- At most one round in flight per federation, enforced by the database so
-- two check-ins racing to open one cannot both succeed.
CREATE UNIQUE INDEX one_round_in_flight ON rounds (federation_id) WHERE outcome IS NULL;

CREATE TABLE round_members (
    federation_id TEXT    NOT NULL,
    round         INTEGER NOT NULL,
    device_id     TEXT    NOT NULL REFERENCES devices (id),
    PRIMARY KEY (federation_id, round, device_id),
    FOREIGN KEY (federation_id, round) REFERENCES rounds (federation_id, round)
) STRICT, WITHOUT ROWID;

CREATE TABLE global_versions (
    federation_id   TEXT    NOT NULL REFERENCES federations (id),
    version         INTEGER NOT NULL CHECK (version >= 1),
    round           INTEGER NOT NULL,
    sha256          BLOB    NOT NULL CHECK (length(sha256) = 32),
    adapter         BLOB    NOT NULL,
    metadata_json   TEXT    NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (federation_id, version),
    UNIQUE (federation_id, round),
    FOREIGN KEY (federation_id, round) REFERENCES rounds (federation_id, round)
) STRICT;

CREATE TABLE events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms         INTEGER NOT NULL,
    federation_id TEXT,
    device_id     TEXT,
    round         INTEGER,
    kind          TEXT    NOT NULL,
    detail_json   TEXT    NOT NULL
) STRICT;
CREATE INDEX events_by_federation ON events (federation_id, seq);

-- The event log is append-only: the database refuses to rewrite history.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN
    SELECT RAISE(ABORT, 'the event log is append-only');
END;
