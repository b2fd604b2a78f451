//! The federations this device joined and what it uploaded to them.
//!
//! Federation is off unless the person joins one: [`Library::active_memberships`]
//! is empty by default and the client does nothing without a membership.
//! Every upload is recorded (round, bytes, privacy spent, the hash of the
//! exact bytes sent) so the person can see what was shared.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::db::Library;
use crate::error::{Result, StoreError};

/// A membership's row id.
pub type MembershipId = i64;

/// Joining a federation.
#[derive(Debug, Clone)]
pub struct NewMembership {
    /// The server, as the person gave it.
    pub server_url: String,
    /// The federation's id.
    pub federation_id: String,
    /// This device's id in it.
    pub device_id: String,
    /// The client's record (JSON).
    pub record: String,
    /// The privacy budget: total epsilon at `delta`.
    pub epsilon_budget: f64,
    /// The delta the budget is stated at.
    pub delta: f64,
    /// When the device may take part (JSON).
    pub policy: String,
}

/// A federation this device joined.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Membership {
    /// Row id.
    pub id: MembershipId,
    /// The server.
    pub server_url: String,
    /// The federation.
    pub federation_id: String,
    /// This device's id.
    pub device_id: String,
    /// The client's record (JSON).
    pub record: String,
    /// Total epsilon allowed.
    pub epsilon_budget: f64,
    /// At this delta.
    pub delta: f64,
    /// Participation policy (JSON).
    pub policy: String,
    /// When it joined (UTC).
    pub joined_at: String,
    /// When it left, if it did.
    pub left_at: Option<String>,
}

/// An upload about to be recorded.
#[derive(Debug, Clone)]
pub struct NewUpload {
    /// The membership.
    pub membership_id: MembershipId,
    /// The round.
    pub round: u64,
    /// Bytes sent in the round (every message).
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// zCDP rho spent.
    pub rho: f64,
    /// Epsilon of this round alone.
    pub epsilon: f64,
    /// sha256 of the masked upload.
    pub upload_sha256: String,
    /// The global version published after the round, when known.
    pub global_version: Option<u64>,
    /// The local training run.
    pub run_id: Option<i64>,
}

/// A recorded upload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Upload {
    /// Row id.
    pub id: i64,
    /// The membership.
    pub membership_id: MembershipId,
    /// The round.
    pub round: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// zCDP rho spent.
    pub rho: f64,
    /// Epsilon of this round alone.
    pub epsilon: f64,
    /// sha256 of the masked upload.
    pub upload_sha256: String,
    /// Global version after the round.
    pub global_version: Option<u64>,
    /// The local training run.
    pub run_id: Option<i64>,
    /// When (UTC).
    pub uploaded_at: String,
}

const MEMBERSHIP_COLUMNS: &str = "id, server_url, federation_id, device_id, record, epsilon_budget, delta, policy, joined_at, left_at";

fn membership_from_row(row: &Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        id: row.get(0)?,
        server_url: row.get(1)?,
        federation_id: row.get(2)?,
        device_id: row.get(3)?,
        record: row.get(4)?,
        epsilon_budget: row.get(5)?,
        delta: row.get(6)?,
        policy: row.get(7)?,
        joined_at: row.get(8)?,
        left_at: row.get(9)?,
    })
}

const UPLOAD_COLUMNS: &str = "id, membership_id, round, bytes_sent, bytes_received, rho, epsilon, upload_sha256, global_version, run_id, uploaded_at";

fn upload_from_row(row: &Row<'_>) -> rusqlite::Result<Upload> {
    Ok(Upload {
        id: row.get(0)?,
        membership_id: row.get(1)?,
        round: row.get(2)?,
        bytes_sent: row.get(3)?,
        bytes_received: row.get(4)?,
        rho: row.get(5)?,
        epsilon: row.get(6)?,
        upload_sha256: row.get(7)?,
        global_version: row.get(8)?,
        run_id: row.get(9)?,
        uploaded_at: row.get(10)?,
    })
}

impl Library {
    /// Records joining a federation. Joining one this device is already an
    /// active member of is refused.
    pub fn join_federation(&mut self, membership: &NewMembership) -> Result<MembershipId> {
        let result = self.conn.execute(
            "INSERT INTO fed_memberships (server_url, federation_id, device_id, record, epsilon_budget, delta, policy) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                membership.server_url,
                membership.federation_id,
                membership.device_id,
                membership.record,
                membership.epsilon_budget,
                membership.delta,
                membership.policy
            ],
        );
        match result {
            Ok(_) => Ok(self.conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::AlreadyMember(format!(
                    "already a member of federation {} at {}",
                    membership.federation_id, membership.server_url
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Memberships not left: empty unless the person joined one.
    pub fn active_memberships(&self) -> Result<Vec<Membership>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM fed_memberships WHERE left_at IS NULL ORDER BY id"
        ))?;
        let rows = statement.query_map([], membership_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every membership, left ones too (their uploads stay visible),
    /// oldest first.
    pub fn memberships(&self) -> Result<Vec<Membership>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {MEMBERSHIP_COLUMNS} FROM fed_memberships ORDER BY id"
        ))?;
        let rows = statement.query_map([], membership_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One membership, active or not.
    pub fn membership(&self, id: MembershipId) -> Result<Option<Membership>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {MEMBERSHIP_COLUMNS} FROM fed_memberships WHERE id = ?1"
            ))?
            .query_row([id], membership_from_row)
            .optional()?)
    }

    /// Replaces a membership's client record (its log watcher advanced).
    pub fn update_membership_record(&mut self, id: MembershipId, record: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE fed_memberships SET record = ?2 WHERE id = ?1",
            params![id, record],
        )?;
        Ok(())
    }

    /// Replaces a membership's participation policy (when the device may
    /// take part); `false` when there is no such active membership.
    pub fn update_membership_policy(&mut self, id: MembershipId, policy: &str) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE fed_memberships SET policy = ?2 WHERE id = ?1 AND left_at IS NULL",
            params![id, policy],
        )?;
        Ok(changed == 1)
    }

    /// Leaves a federation: the device stops taking part. Its upload
    /// history stays, so the person can still see what was shared.
    pub fn leave_federation(&mut self, id: MembershipId) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE fed_memberships SET left_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             WHERE id = ?1 AND left_at IS NULL",
            [id],
        )?;
        Ok(changed == 1)
    }

    /// Books an upload's privacy charge, durably, before the upload leaves
    /// the device (the round's outcome is filled in later by
    /// [`Library::complete_upload`]). Booking the same round again keeps
    /// the larger charge: a round whose survivors turned out fewer than its
    /// noise split assumed is re-booked at its true cost. Returns the row.
    pub fn charge_upload(&mut self, upload: &NewUpload) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO fed_uploads (membership_id, round, bytes_sent, bytes_received, rho, epsilon, upload_sha256, global_version, run_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
             ON CONFLICT (membership_id, round) DO UPDATE SET \
               rho = max(rho, excluded.rho), epsilon = max(epsilon, excluded.epsilon), \
               run_id = coalesce(excluded.run_id, run_id)",
            params![
                upload.membership_id,
                upload.round,
                upload.bytes_sent,
                upload.bytes_received,
                upload.rho,
                upload.epsilon,
                upload.upload_sha256,
                upload.global_version,
                upload.run_id
            ],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM fed_uploads WHERE membership_id = ?1 AND round = ?2",
            params![upload.membership_id, upload.round],
            |row| row.get(0),
        )?)
    }

    /// Fills in what a charged upload's round came to: the traffic and the
    /// global version it published. `false` if no charge was booked for
    /// that round.
    pub fn complete_upload(
        &mut self,
        membership: MembershipId,
        round: u64,
        bytes_sent: u64,
        bytes_received: u64,
        global_version: u64,
    ) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE fed_uploads SET bytes_sent = ?3, bytes_received = ?4, global_version = ?5 \
             WHERE membership_id = ?1 AND round = ?2",
            params![
                membership,
                round,
                bytes_sent,
                bytes_received,
                global_version
            ],
        )?;
        Ok(changed == 1)
    }

    /// Every upload to a membership, oldest first.
    pub fn uploads(&self, membership: MembershipId) -> Result<Vec<Upload>> {
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM fed_uploads WHERE membership_id = ?1 ORDER BY round"
        ))?;
        let rows = statement.query_map([membership], upload_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The zCDP rho spent in a membership so far (zCDP composes by adding).
    pub fn rho_spent(&self, membership: MembershipId) -> Result<f64> {
        Ok(self.conn.query_row(
            "SELECT coalesce(sum(rho), 0) FROM fed_uploads WHERE membership_id = ?1",
            [membership],
            |row| row.get(0),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(library: &mut Library) -> Result<MembershipId> {
        library.join_federation(&NewMembership {
            server_url: "https://127.0.0.1:8443".into(),
            federation_id: "ab".repeat(16),
            device_id: "cd".repeat(32),
            record: "{}".into(),
            epsilon_budget: 8.0,
            delta: 1e-6,
            policy: "{}".into(),
        })
    }

    #[test]
    fn off_by_default_join_upload_leave() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut library = Library::open(dir.path()).expect("open");
        assert!(library.active_memberships().expect("none").is_empty());
        let id = join(&mut library).expect("join");
        assert!(
            join(&mut library).is_err(),
            "one active membership per federation"
        );
        for round in [1u64, 2] {
            let charge = NewUpload {
                membership_id: id,
                round,
                bytes_sent: 0,
                bytes_received: 0,
                rho: 0.05,
                epsilon: 1.2,
                upload_sha256: "e".repeat(64),
                global_version: None,
                run_id: None,
            };
            let row = library.charge_upload(&charge).expect("charge");
            // Booked again with a lower charge (a retry): nothing changes.
            let lower = NewUpload {
                rho: 0.01,
                ..charge.clone()
            };
            assert_eq!(library.charge_upload(&lower).expect("again"), row);
            assert!(
                library
                    .complete_upload(id, round, 4_000_000, 1_000, round)
                    .expect("complete")
            );
        }
        assert!((library.rho_spent(id).expect("rho") - 0.1).abs() < 1e-12);
        // A round re-booked at a higher, true cost keeps the higher one.
        library
            .charge_upload(&NewUpload {
                membership_id: id,
                round: 2,
                bytes_sent: 0,
                bytes_received: 0,
                rho: 0.25,
                epsilon: 3.0,
                upload_sha256: "e".repeat(64),
                global_version: None,
                run_id: None,
            })
            .expect("raise");
        assert!((library.rho_spent(id).expect("rho") - 0.3).abs() < 1e-12);
        let second = &library.uploads(id).expect("uploads")[1];
        assert_eq!(
            (second.global_version, second.bytes_sent),
            (Some(2), 4_000_000)
        );
        assert!(
            !library
                .complete_upload(id, 9, 1, 1, 1)
                .expect("no such round")
        );
        assert!(
            library
                .update_membership_policy(id, r#"{"require_idle":false}"#)
                .expect("policy")
        );
        assert_eq!(
            library.membership(id).expect("read").expect("there").policy,
            r#"{"require_idle":false}"#
        );
        assert_eq!(library.uploads(id).expect("uploads").len(), 2);
        assert!(library.leave_federation(id).expect("leave"));
        assert!(library.active_memberships().expect("left").is_empty());
        assert!(
            !library.update_membership_policy(id, "{}").expect("policy"),
            "a membership that was left keeps its last policy"
        );
        assert_eq!(library.uploads(id).expect("history kept").len(), 2);
        assert_eq!(
            library.memberships().expect("all").len(),
            1,
            "left ones too"
        );
        join(&mut library).expect("join again after leaving");
    }
}
