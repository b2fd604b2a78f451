//! Devices: invites, enrolment, revocation and check-ins ([`DeviceStore`])
//! and the records they use.

use serde::Serialize;

use super::StorageFuture;

/// The population: invites, enrolled devices (each enrolment and revocation
/// logged), their check-ins and who of them can be drawn into a cohort.
pub trait DeviceStore: Send + Sync + 'static {
    /// Stores a new invite (only the token's hash).
    fn create_invite(&self, invite: NewInvite) -> StorageFuture<'_, ()>;

    /// Consumes an invite and creates the device, atomically: of two
    /// enrolments racing on one token exactly one succeeds.
    fn enrol(&self, enrolment: Enrolment) -> StorageFuture<'_, DeviceRecord>;

    /// One device.
    fn device(&self, id: String) -> StorageFuture<'_, Option<DeviceRecord>>;

    /// Devices, of one federation or all, by enrolment time.
    fn devices(&self, federation_id: Option<String>) -> StorageFuture<'_, Vec<DeviceRecord>>;

    /// Revokes a device; `None` if there is no such device. Revoking twice
    /// keeps the first time.
    fn revoke_device(&self, id: String, at_ms: u64) -> StorageFuture<'_, Option<DeviceRecord>>;

    /// Notes a check-in (and whether the device could take part now).
    fn record_checkin(&self, checkin: Checkin) -> StorageFuture<'_, ()>;

    /// Non-revoked devices of a federation, and how many of them were
    /// eligible at or after `eligible_since_ms`.
    fn device_counts(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, DeviceCounts>;

    /// The devices [`DeviceStore::device_counts`] counts as eligible, with keys.
    fn eligible_devices(
        &self,
        federation_id: String,
        eligible_since_ms: u64,
    ) -> StorageFuture<'_, Vec<CohortMember>>;
}

/// An invite to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// Federation the invite admits to.
    pub federation_id: String,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
    /// When created.
    pub created_at_ms: u64,
    /// When it stops working.
    pub expires_at_ms: u64,
}

/// A verified enrolment to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolment {
    /// SHA-256 of the presented invite token.
    pub token_sha256: [u8; 32],
    /// The new device's id.
    pub device_id: String,
    /// The device's Ed25519 public key.
    pub public_key: [u8; 32],
    /// When.
    pub at_ms: u64,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRecord {
    /// Device id.
    pub id: String,
    /// The federation it enrolled in.
    pub federation_id: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
    /// When it enrolled.
    pub enrolled_at_ms: u64,
    /// Its last check-in.
    pub last_checkin_ms: Option<u64>,
    /// Its last check-in saying it could take part.
    pub last_eligible_ms: Option<u64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<u64>,
}

/// A check-in to note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkin {
    /// The device.
    pub device_id: String,
    /// When.
    pub at_ms: u64,
    /// Whether the device could take part in a round now.
    pub eligible: bool,
}

/// A federation's population.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeviceCounts {
    /// Non-revoked devices.
    pub active: u64,
    /// Of those, eligible recently.
    pub eligible: u64,
}

/// A device in a round's cohort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CohortMember {
    /// Device id.
    pub device_id: String,
    /// Its Ed25519 public key.
    pub public_key: [u8; 32],
}
