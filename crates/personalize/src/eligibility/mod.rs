//! When this device may take part in a federated round.
//!
//! Training for a federation must never get in the person's way: by
//! default only on mains power, when the machine is idle, and within the
//! hours the person chose. The conditions come from a [`DeviceState`]
//! (Linux reads sysfs and the load average; a phone plugs in its own
//! battery and activity APIs), the decision from a [`ParticipationPolicy`]
//! the person sets.

use chrono::Timelike;
use serde::{Deserialize, Serialize};

/// What the device reports about itself now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Conditions {
    /// On mains power (`None`: cannot tell).
    pub on_power: Option<bool>,
    /// Idle enough to train (`None`: cannot tell).
    pub idle: Option<bool>,
    /// The local hour, 0..24.
    pub local_hour: u8,
}

mod linux;
mod macos;

pub use linux::LinuxDeviceState;
pub use macos::MacDeviceState;

/// Where conditions come from: a trait so mobile platforms plug in theirs.
pub trait DeviceState: Send + Sync {
    /// The conditions now.
    fn conditions(&self) -> Conditions;
}

/// This platform's source of conditions: sysfs and the load average on
/// Linux, `pmset` and `sysctl` on macOS. Elsewhere (Windows; phones,
/// where the app plugs in the platform's battery API itself) both read
/// as unknown, which the default policy counts against taking part.
pub fn platform_device_state() -> Box<dyn DeviceState> {
    if cfg!(target_os = "linux") {
        Box::new(LinuxDeviceState::default())
    } else if cfg!(target_os = "macos") {
        Box::new(MacDeviceState::default())
    } else {
        Box::new(UnknownDeviceState)
    }
}

/// A device that reports neither power nor idleness.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnknownDeviceState;

impl DeviceState for UnknownDeviceState {
    fn conditions(&self) -> Conditions {
        Conditions {
            on_power: None,
            idle: None,
            local_hour: local_hour(),
        }
    }
}

/// The local hour, 0..24.
pub(crate) fn local_hour() -> u8 {
    chrono::Local::now().hour() as u8
}

/// The person's rules for taking part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(default)]
pub struct ParticipationPolicy {
    /// Only on mains power.
    pub require_power: bool,
    /// Only when the machine is idle.
    pub require_idle: bool,
    /// Only from this hour (inclusive) to that hour (exclusive), local
    /// time; may wrap midnight (22 -> 6). `None`: any time.
    pub hours: Option<(u8, u8)>,
}

impl Default for ParticipationPolicy {
    fn default() -> Self {
        ParticipationPolicy {
            require_power: true,
            require_idle: true,
            hours: None,
        }
    }
}

/// The decision, with the reasons against when it is no.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Decision {
    /// Whether the device may take part now.
    pub eligible: bool,
    /// Why not, in plain words.
    pub reasons: Vec<String>,
}

impl ParticipationPolicy {
    /// Decides from the conditions. Unknown conditions count against a
    /// requirement: when in doubt, do not use the person's machine.
    pub fn decide(&self, conditions: &Conditions) -> Decision {
        let mut reasons = Vec::new();
        if self.require_power && conditions.on_power != Some(true) {
            reasons.push(match conditions.on_power {
                Some(false) => "on battery".to_owned(),
                _ => "cannot tell whether the device is on power (it does not report it to Hearth; allow taking part on battery to go ahead)".to_owned(),
            });
        }
        if self.require_idle && conditions.idle != Some(true) {
            reasons.push(match conditions.idle {
                Some(false) => "the machine is busy".to_owned(),
                _ => "cannot tell whether the machine is idle (it does not report it to Hearth; allow taking part while in use to go ahead)".to_owned(),
            });
        }
        if let Some((start, end)) = self.hours {
            let hour = conditions.local_hour;
            let inside = if start <= end {
                (start..end).contains(&hour)
            } else {
                hour >= start || hour < end
            };
            if !inside {
                reasons.push(format!("outside the hours {start}:00-{end}:00"));
            }
        }
        Decision {
            eligible: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_with_reasons() {
        let policy = ParticipationPolicy {
            hours: Some((22, 6)),
            ..ParticipationPolicy::default()
        };
        let good = Conditions {
            on_power: Some(true),
            idle: Some(true),
            local_hour: 23,
        };
        assert!(policy.decide(&good).eligible);
        assert!(
            policy
                .decide(&Conditions {
                    local_hour: 3,
                    ..good
                })
                .eligible
        );
        let bad = policy.decide(&Conditions {
            on_power: Some(false),
            idle: None,
            local_hour: 12,
        });
        assert!(!bad.eligible);
        assert_eq!(bad.reasons.len(), 3, "{:?}", bad.reasons);
        let anytime = ParticipationPolicy {
            require_power: false,
            require_idle: false,
            hours: None,
        };
        assert!(
            anytime
                .decide(&Conditions {
                    on_power: None,
                    idle: None,
                    local_hour: 0
                })
                .eligible
        );
    }
}
