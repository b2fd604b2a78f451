//! macOS: power from `pmset -g batt`, idleness from `sysctl vm.loadavg`.
//!
//! The tools that ship with every Mac rather than IOKit through FFI: the
//! answers are the same, asked once per status or round check, and this
//! way the crate stays free of `unsafe` and of platform SDK bindings. The
//! parsers are plain functions, so they are tested on every platform.

use std::path::PathBuf;
use std::process::Command;

use super::{Conditions, DeviceState};

/// macOS conditions, read through `pmset` and `sysctl`.
#[derive(Debug, Clone)]
pub struct MacDeviceState {
    /// The `pmset` tool.
    pub pmset: PathBuf,
    /// The `sysctl` tool.
    pub sysctl: PathBuf,
    /// Idle means a one-minute load average below this share of the cores.
    pub idle_load_per_core: f64,
}

impl Default for MacDeviceState {
    fn default() -> Self {
        MacDeviceState {
            // Absolute paths: the answer must not depend on the PATH.
            pmset: PathBuf::from("/usr/bin/pmset"),
            sysctl: PathBuf::from("/usr/sbin/sysctl"),
            idle_load_per_core: 0.5,
        }
    }
}

impl DeviceState for MacDeviceState {
    fn conditions(&self) -> Conditions {
        let on_power = run(&self.pmset, &["-g", "batt"]).and_then(|out| parse_power_source(&out));
        let idle = run(&self.sysctl, &["-n", "vm.loadavg"])
            .and_then(|out| parse_loadavg(&out))
            .map(|load| {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
                load < self.idle_load_per_core * cores
            });
        Conditions {
            on_power,
            idle,
            local_hour: super::local_hour(),
        }
    }
}

/// The tool's standard output when it ran and succeeded.
fn run(tool: &std::path::Path, args: &[&str]) -> Option<String> {
    let output = Command::new(tool).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// `pmset -g batt`'s first line says what the Mac draws from:
/// `Now drawing from 'AC Power'` (also on Macs without a battery) or
/// `'Battery Power'` (`'UPS Power'` counts as not on mains).
fn parse_power_source(output: &str) -> Option<bool> {
    let line = output.lines().find(|l| l.contains("drawing from"))?;
    let source = line.split('\'').nth(1)?;
    Some(source == "AC Power")
}

/// `sysctl -n vm.loadavg` prints `{ 1.52 1.73 1.84 }`: the one-minute
/// load is the first number.
fn parse_loadavg(output: &str) -> Option<f64> {
    output
        .trim()
        .trim_start_matches('{')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pmset_power_sources() {
        let on_ac = "Now drawing from 'AC Power'\n -InternalBattery-0 (id=4653155)\t100%; charged; 0:00 remaining present: true\n";
        assert_eq!(parse_power_source(on_ac), Some(true));
        let on_battery = "Now drawing from 'Battery Power'\n -InternalBattery-0 (id=4653155)\t87%; discharging; 5:12 remaining present: true\n";
        assert_eq!(parse_power_source(on_battery), Some(false));
        assert_eq!(
            parse_power_source("Now drawing from 'UPS Power'\n"),
            Some(false)
        );
        assert_eq!(parse_power_source(""), None);
        assert_eq!(parse_power_source("Now drawing from nothing"), None);
    }

    #[test]
    fn reads_sysctl_load_average() {
        assert_eq!(parse_loadavg("{ 1.52 1.73 1.84 }\n"), Some(1.52));
        assert_eq!(parse_loadavg("{1.5 1.7 1.8}"), Some(1.5));
        assert_eq!(parse_loadavg("garbage"), None);
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn a_missing_tool_reads_as_unknown() {
        let state = MacDeviceState {
            pmset: PathBuf::from("/nonexistent/pmset"),
            sysctl: PathBuf::from("/nonexistent/sysctl"),
            idle_load_per_core: 0.5,
        };
        let conditions = state.conditions();
        assert_eq!((conditions.on_power, conditions.idle), (None, None));
    }
}
