//! Power and idleness on Android, from the app's Kotlin plugin
//! (`gen/android/app/src/main/java/org/hearth/app/DeviceStatePlugin.kt`:
//! `BatteryManager`'s plug state and `PowerManager.isInteractive`).
//!
//! Android's sysfs power-supply files are closed to apps, so the library's
//! readers cannot see the battery there; everywhere else the app uses
//! [`hearth_personalize::eligibility::platform_device_state`]. Not built
//! on this project's CI machine (no Android NDK); see docs/mobile.md.

use std::sync::Arc;

use hearth_personalize::eligibility::{Conditions, DeviceState};
use serde::Deserialize;
use tauri::plugin::{Builder, PluginHandle, TauriPlugin};
use tauri::{Manager, Runtime};

use crate::state::DeviceConditions;

/// What the Kotlin plugin's `conditions` command answers.
#[derive(Debug, Default, Deserialize)]
struct Reported {
    #[serde(default)]
    on_power: Option<bool>,
    #[serde(default)]
    idle: Option<bool>,
}

/// Conditions read through the plugin; a failed call reads as unknown,
/// which the default policy counts against taking part.
struct AndroidDeviceState<R: Runtime>(PluginHandle<R>);

impl<R: Runtime> DeviceState for AndroidDeviceState<R> {
    fn conditions(&self) -> Conditions {
        let reported: Reported = self
            .0
            .run_mobile_plugin("conditions", ())
            .unwrap_or_default();
        let mut conditions = hearth_personalize::eligibility::UnknownDeviceState.conditions();
        conditions.on_power = reported.on_power;
        conditions.idle = reported.idle;
        conditions
    }
}

/// Registers the Kotlin plugin and manages [`DeviceConditions`] from it.
pub fn init<R: Runtime>() -> TauriPlugin<R> {
    Builder::new("device-state")
        .setup(|app, api| {
            let handle = api.register_android_plugin("org.hearth.app", "DeviceStatePlugin")?;
            app.manage(DeviceConditions::new(Arc::new(AndroidDeviceState(handle))));
            Ok(())
        })
        .build()
}
