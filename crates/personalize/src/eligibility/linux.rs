//! Linux (desktops and laptops): power from `/sys/class/power_supply`,
//! idleness from `/proc/loadavg`.

use std::path::PathBuf;

use super::{Conditions, DeviceState};

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
            local_hour: super::local_hour(),
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
}
