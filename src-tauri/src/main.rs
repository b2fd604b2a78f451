//! The Hearth desktop app's binary: everything is in the library crate, so
//! the mobile builds (which link the library) run the same code.

// No console window next to the app on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    hearth_app_lib::run();
}
