//! Replay protection for signed requests.
//!
//! A signed request stays acceptable while its timestamp is within
//! [`auth::MAX_CLOCK_SKEW_MS`](crate::auth::MAX_CLOCK_SKEW_MS) of the
//! server's clock, so the server remembers every verified `(device,
//! signature)` pair until that timestamp has left the window, and refuses a
//! second sight of one. Memory is bounded twice over: per device (a device
//! sending more than its quota inside one window is told to slow down) and
//! in total (when full, new requests are refused as busy rather than
//! forgetting entries early, which would reopen the replay hole).
//!
//! The set lives in memory only. What a restart would forget is covered by
//! a floor instead of a stored nonce set: requests timestamped before the
//! server started are refused, so nothing captured before a restart can be
//! replayed after it. A device whose clock runs behind the server's sees
//! that refusal for at most its lag right after a restart; the error carries
//! the server's time so it can correct.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

/// Bounds on what the guard remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// How long an entry is kept after its request's timestamp (the clock
    /// skew window: after that, the timestamp check refuses the request).
    pub window_ms: u64,
    /// Most requests one device may make inside one window.
    pub per_device: usize,
    /// Most entries kept in total.
    pub total: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        ReplayLimits {
            window_ms: crate::auth::MAX_CLOCK_SKEW_MS,
            // Two requests a second, sustained, is far above any honest
            // client's check-in and upload pattern.
            per_device: 1_200,
            // About 100 bytes an entry: ~25 MB at most.
            total: 250_000,
        }
    }
}

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// This exact signed request was already accepted.
    #[error("this signed request was already used")]
    Replayed,
    /// The request was signed before this server process started.
    #[error("request timestamp {timestamp_ms} predates the server's start at {started_ms}")]
    BeforeStart {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// When the server started.
        started_ms: u64,
    },
    /// The device used up its quota for the current window.
    #[error("too many requests from this device; slow down")]
    DeviceQuota,
    /// The guard is full.
    #[error("too many requests in flight; retry shortly")]
    Full,
}

/// Remembers recently accepted signed requests. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct ReplayGuard {
    limits: ReplayLimits,
    started_ms: u64,
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    /// Digest of (device, signature) for membership.
    keys: HashSet<[u8; 32]>,
    /// The same entries ordered by when they may be forgotten.
    expiries: BTreeMap<(u64, [u8; 32]), String>,
    per_device: HashMap<String, usize>,
}

impl ReplayGuard {
    /// A guard refusing requests timestamped before `started_ms`.
    pub fn new(limits: ReplayLimits, started_ms: u64) -> Self {
        ReplayGuard {
            limits,
            started_ms,
            inner: Mutex::new(Seen::default()),
        }
    }

    /// Accepts a verified request once: remembers it, or says why not.
    /// Call only after the signature verified, so that forged requests
    /// cannot fill the guard.
    pub fn check_and_remember(
        &self,
        device_id: &str,
        signature: &[u8; 64],
        timestamp_ms: u64,
        now_ms: u64,
    ) -> Result<(), ReplayError> {
        if timestamp_ms < self.started_ms {
            return Err(ReplayError::BeforeStart {
                timestamp_ms,
                started_ms: self.started_ms,
            });
        }
        let key: [u8; 32] = Sha256::new()
            .chain_update(device_id.as_bytes())
            .chain_update([0u8])
            .chain_update(signature)
            .finalize()
            .into();
        // The lock is never held across an await, and a panic while holding
        // it cannot leave the maps inconsistent in a way that admits a
        // replay, so a poisoned lock is still usable.
        let mut seen = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        seen.forget_expired(now_ms);
        if seen.keys.contains(&key) {
            return Err(ReplayError::Replayed);
        }
        if seen.per_device.get(device_id).copied().unwrap_or(0) >= self.limits.per_device {
            return Err(ReplayError::DeviceQuota);
        }
        if seen.keys.len() >= self.limits.total {
            return Err(ReplayError::Full);
        }
        let expiry = timestamp_ms.saturating_add(self.limits.window_ms);
        seen.keys.insert(key);
        seen.expiries.insert((expiry, key), device_id.to_owned());
        *seen.per_device.entry(device_id.to_owned()).or_insert(0) += 1;
        Ok(())
    }

    /// How many requests are remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Seen {
    /// Drops entries whose requests would now fail the timestamp check anyway.
    fn forget_expired(&mut self, now_ms: u64) {
        while let Some(entry) = self.expiries.first_entry() {
            let (expiry, key) = *entry.key();
            if expiry >= now_ms {
                break;
            }
            let device = entry.remove();
            self.keys.remove(&key);
            if let Some(count) = self.per_device.get_mut(&device) {
                *count -= 1;
                if *count == 0 {
                    self.per_device.remove(&device);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn limits() -> ReplayLimits {
        ReplayLimits {
            window_ms: 1_000,
            per_device: 3,
            total: 5,
        }
    }

    fn sig(n: u8) -> [u8; 64] {
        [n; 64]
    }

    #[test]
    fn a_request_is_accepted_once() {
        let guard = ReplayGuard::new(limits(), T0);
        guard
            .check_and_remember("a", &sig(1), T0, T0)
            .expect("first");
        assert_eq!(
            guard.check_and_remember("a", &sig(1), T0, T0 + 10),
            Err(ReplayError::Replayed)
        );
        // The same signature bytes under another device are another request.
        guard
            .check_and_remember("b", &sig(1), T0, T0)
            .expect("other device");
    }

    #[test]
    fn entries_are_forgotten_only_after_the_window() {
        let guard = ReplayGuard::new(limits(), T0);
        guard
            .check_and_remember("a", &sig(1), T0, T0)
            .expect("first");
        // Still inside the window (timestamp + window): remembered.
        assert_eq!(
            guard.check_and_remember("a", &sig(1), T0, T0 + 1_000),
            Err(ReplayError::Replayed)
        );
        // Past it the timestamp check refuses the request before the guard
        // is asked, so forgetting is safe.
        guard
            .check_and_remember("a", &sig(2), T0 + 1_001, T0 + 1_001)
            .expect("new request");
        assert_eq!(guard.len(), 1);
    }

    #[test]
    fn requests_signed_before_start_are_refused() {
        let guard = ReplayGuard::new(limits(), T0);
        assert!(matches!(
            guard.check_and_remember("a", &sig(1), T0 - 1, T0),
            Err(ReplayError::BeforeStart { .. })
        ));
    }

    #[test]
    fn memory_is_bounded_per_device_and_in_total() {
        let guard = ReplayGuard::new(limits(), T0);
        for n in 0..3 {
            guard
                .check_and_remember("a", &sig(n), T0, T0)
                .expect("quota");
        }
        assert_eq!(
            guard.check_and_remember("a", &sig(9), T0, T0),
            Err(ReplayError::DeviceQuota)
        );
        guard.check_and_remember("b", &sig(1), T0, T0).expect("b1");
        guard.check_and_remember("c", &sig(1), T0, T0).expect("c1");
        assert_eq!(
            guard.check_and_remember("d", &sig(1), T0, T0),
            Err(ReplayError::Full)
        );
        // Once the window passes, room comes back.
        guard
            .check_and_remember("d", &sig(1), T0 + 2_000, T0 + 2_000)
            .expect("after expiry");
        assert_eq!(guard.len(), 1);
    }
}
