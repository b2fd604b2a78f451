//! Wall-clock time as the federation counts it: milliseconds since the
//! Unix epoch. One definition for the client, the server and everything
//! they stamp (requests, check-ins, log heads), so both sides read the
//! clock the same way.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it,
/// `u64::MAX` if past what a `u64` holds).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2020() {
        assert!(super::now_ms() > 1_577_836_800_000);
    }
}
