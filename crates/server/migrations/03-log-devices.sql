-- Enrolments, revocations and round parameters in the transparency log
-- (entries of kinds device_enrolled, device_revoked, round_opened; see
-- hearth-ledger's entries). The lookup columns are the ones 02-log.sql
-- made; these indexes keep one entry per device and event, one per round.
-- Devices enrolled before this migration are logged when the database is
-- next opened (storage/log.rs, backfill_devices).

CREATE UNIQUE INDEX log_one_enrolment ON log_leaves (federation_id, device_id)
    WHERE kind = 'device_enrolled';
CREATE UNIQUE INDEX log_one_revocation ON log_leaves (federation_id, device_id)
    WHERE kind = 'device_revoked';
CREATE UNIQUE INDEX log_one_round_opening ON log_leaves (federation_id, round)
    WHERE kind = 'round_opened';
