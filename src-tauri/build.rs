//! Tauri's build step: reads tauri.conf.json and the capabilities, and
//! generates the permission files.

fn main() {
    tauri_build::build();
}
