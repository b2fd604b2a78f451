//! The commands the front end invokes, one folder per feature (the
//! screens' names): `commands.rs` holds the thin `#[tauri::command]`
//! functions, `helpers.rs` the logic they share with tests, `models.rs`
//! the request and response shapes (mirrored in `ui/src/api/types.ts`),
//! `tests.rs` the mock-runtime tests.
//!
//! `try` is a Rust keyword, so the Try screen's commands live in
//! [`try_it`].

pub mod ask;
pub mod audit;
pub mod federation;
pub mod jobs;
pub mod library;
pub mod personalize;
pub mod try_it;
