// The shapes the Rust commands send and accept. They are generated from
// the Rust types into bindings.ts (src-tauri/src/bindings.rs; a stale file
// fails the app's tests), so nothing here is copied by hand.

export type * from "./bindings";

import type { JobInfo } from "./bindings";

/** A running job's id (`JobInfo.id`). */
export type JobId = JobInfo["id"];

/**
 * A request as the front end sends it: every field left out takes the
 * Rust side's default (the request types are `#[serde(default)]`).
 */
export type Request<T> = Partial<T>;
