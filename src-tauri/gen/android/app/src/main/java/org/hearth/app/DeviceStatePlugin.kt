// Power and idleness for the federation's eligibility (src-tauri/src/device_state.rs
// calls `conditions`). Android closes its sysfs power-supply files to apps,
// so the Rust side cannot read them as it does on Linux desktops.
package org.hearth.app

import android.app.Activity
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.BatteryManager
import android.os.PowerManager
import app.tauri.annotation.Command
import app.tauri.annotation.TauriPlugin
import app.tauri.plugin.Invoke
import app.tauri.plugin.JSObject
import app.tauri.plugin.Plugin
import org.json.JSONObject

@TauriPlugin
class DeviceStatePlugin(private val activity: Activity) : Plugin(activity) {
    // on_power: plugged into AC, USB or a wireless charger (the sticky
    // battery broadcast needs no permission); idle: the screen is off, so
    // the person is not using the phone. Unknown answers are JSON null,
    // which the default policy counts against taking part.
    @Command
    fun conditions(invoke: Invoke) {
        val result = JSObject()
        val battery = activity.registerReceiver(null, IntentFilter(Intent.ACTION_BATTERY_CHANGED))
        if (battery == null) {
            result.put("on_power", JSONObject.NULL)
        } else {
            result.put("on_power", battery.getIntExtra(BatteryManager.EXTRA_PLUGGED, 0) != 0)
        }
        val power = activity.getSystemService(Context.POWER_SERVICE) as? PowerManager
        if (power == null) {
            result.put("idle", JSONObject.NULL)
        } else {
            result.put("idle", !power.isInteractive)
        }
        invoke.resolve(result)
    }
}
