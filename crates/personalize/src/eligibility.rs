//! When this device may take part in a federated round.
//!
//! Training for a federation must never get in the person's way: by
//! default only on mains power, when the machine is idle, and within the
//! hours the person chose. The conditions come from a [`DeviceState`]
//! (Linux reads sysfs and the load average; a phone plugs in its own
//! battery and activity APIs), the decision from a [`ParticipationPolicy`]
//! the person sets.

use std::path::PathBuf;

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

/// Where conditions come from: a trait so mobile platforms plug in theirs.
pub trait DeviceState: Send + Sync {
    /// The conditions now.
    fn conditions(&self) -> Conditions;
}

/// Linux: `/sys/class/power_supply` and `/proc/loadavg`.
#[derive(Debug, Clone)]
pub struct LinuxDeviceState {
    /// The power-supply class folder.
    pub power_supply: PathBuf,
    /// The load-average file.
    pub loadavg: PathBuf,
    /// Idle means a one-minute load average below this share of the cores.
    pub idle_load_per_core: f64,
}

impl Default for LinuxDeviceState {
    fn default() -> Self {
        LinuxDeviceState {
            power_supply: PathBuf::from("/sys/class/power_supply"),
            loadavg: PathBuf::from("/proc/loadavg"),
            idle_load_per_core: 0.5,
        }
    }
}

impl LinuxDeviceState {
    /// Mains power: any supply of type `Mains` online. A machine with no
    /// battery at all (a desktop) is on mains by definition; one whose
    /// supplies cannot be read is unknown.
    fn on_power(&self) -> Option<bool> {
        let entries = std::fs::read_dir(&self.power_supply).ok()?;
        let mut has_battery = false;
        let mut mains_online = false;
        for entry in entries.flatten() {
            let path = entry.path();
            let kind = std::fs::read_to_string(path.join("type")).unwrap_or_default();
            match kind.trim() {
                "Mains" | "USB" => {
                    let online = std::fs::read_to_string(path.join("online")).unwrap_or_default();
                    mains_online |= online.trim() == "1";
                }
                "Battery" => has_battery = true,
                _ => {}
            }
        }
        Some(mains_online || !has_battery)
    }

    fn idle(&self) -> Option<bool> {
        let text = std::fs::read_to_string(&self.loadavg).ok()?;
        let load: f64 = text.split_whitespace().next()?.parse().ok()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Some(load < self.idle_load_per_core * cores)
    }
}

impl DeviceState for LinuxDeviceState {
    fn conditions(&self) -> Conditions {
        Conditions {
            on_power: self.on_power(),
            idle: self.idle(),
            local_hour: chrono::Local::now().hour() as u8,
        }
    }
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
                _ => "cannot tell whether the device is on power".to_owned(),
            });
        }
        if self.require_idle && conditions.idle != Some(true) {
            reasons.push(match conditions.idle {
                Some(false) => "the machine is busy".to_owned(),
                _ => "cannot tell whether the machine is idle".to_owned(),
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

    fn supply(dir: &std::path::Path, name: &str, kind: &str, online: Option<&str>) {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).expect("mkdir");
        std::fs::write(path.join("type"), format!("{kind}\n")).expect("type");
        if let Some(online) = online {
            std::fs::write(path.join("online"), format!("{online}\n")).expect("online");
        }
    }

    #[test]
    fn reads_power_and_load_from_sysfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = LinuxDeviceState {
            power_supply: dir.path().join("power_supply"),
            loadavg: dir.path().join("loadavg"),
            idle_load_per_core: 0.5,
        };
        assert_eq!(state.on_power(), None, "unreadable: unknown");
        std::fs::create_dir_all(&state.power_supply).expect("mkdir");
        assert_eq!(state.on_power(), Some(true), "no battery: a desktop");
        supply(&state.power_supply, "BAT0", "Battery", None);
        supply(&state.power_supply, "AC", "Mains", Some("0"));
        assert_eq!(state.on_power(), Some(false));
        supply(&state.power_supply, "AC", "Mains", Some("1"));
        assert_eq!(state.on_power(), Some(true));
        std::fs::write(&state.loadavg, "0.01 0.05 0.10 1/123 4567\n").expect("load");
        assert_eq!(state.idle(), Some(true));
        std::fs::write(&state.loadavg, "64.0 0.05 0.10 1/123 4567\n").expect("load");
        assert_eq!(state.idle(), Some(false));
        std::fs::write(&state.loadavg, "garbage").expect("load");
        assert_eq!(state.idle(), None);
    }

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
