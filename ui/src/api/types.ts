// The shapes the Rust commands send and accept, mirrored from
// src-tauri/src/{error.rs,jobs.rs,commands/*/models.rs} and the library
// types they return (hearth-store's Item, Run, Adapter, ...). Field names
// are the Rust ones (snake_case), as serde sends them.

/** `ErrorKind` in src-tauri/src/error.rs. */
export type ErrorKind =
  | "invalid_input"
  | "not_found"
  | "busy"
  | "no_data"
  | "not_resumable"
  | "cancelled"
  | "model_missing"
  | "library"
  | "model"
  | "federation"
  | "privacy_budget"
  | "internal";

/** Every command error: `{kind, message}`. */
export interface AppError {
  kind: ErrorKind;
  message: string;
}

export type JobId = number;

/** `JobEvent<T>` in src-tauri/src/jobs.rs. */
export type JobEvent<T> =
  | { event: "begin"; task: string; total: number | null }
  | { event: "advance"; done: number }
  | { event: "metric"; name: string; step: number; value: number }
  | { event: "note"; message: string }
  | { event: "end" }
  | { event: "done"; result: T }
  | { event: "failed"; error: AppError };

export type JobKind = "import" | "embed" | "train_text" | "train_photos" | "train_ask" | "generate" | "federate";

export interface JobInfo {
  id: JobId;
  kind: JobKind;
  cancelling: boolean;
}

export type ItemKind = "photo" | "text";

export interface Item {
  id: number;
  kind: ItemKind;
  sha256: string;
  path: string;
  size_bytes: number;
  media_type: string;
  width: number | null;
  height: number | null;
  captured_at: string | null;
  /** Relative to the library: `thumbnails/ab/<sha256>.jpg`. */
  thumbnail: string | null;
  text_chars: number | null;
  imported_at: string;
  labels: string[];
}

export interface ItemQuery {
  kind?: ItemKind;
  label?: string;
  search?: string;
}

export interface LibraryStats {
  photos: number;
  texts: number;
  photo_bytes: number;
  text_bytes: number;
  text_chars: number;
  labels: number;
  labelled_items: number;
  database_bytes: number;
  thumbnail_bytes: number;
}

export interface LibraryInfo {
  path: string;
  stats: LibraryStats;
}

export interface LabelSummary {
  name: string;
  items: number;
}

export type Outcome = "imported" | "already_present" | "moved" | "skipped" | "failed";

export interface FileReport {
  path: string;
  outcome: Outcome;
  kind?: ItemKind;
  item_id?: number;
  reason?: string;
}

export interface ImportSummary {
  imported: number;
  already_present: number;
  moved: number;
  skipped: number;
  failed: number;
  cancelled: boolean;
  problems: FileReport[];
}

export interface TextTrainingRequest {
  model?: string | null;
  label?: string | null;
  steps: number;
  rank: number;
  batch_size: number;
  seq_len: number;
  learning_rate: number;
  eval_every: number;
  checkpoint_every: number;
  device: "auto" | "cpu" | "cuda" | "metal";
}

export type RunStatus = "running" | "paused" | "completed" | "early_stopped" | "failed";

export interface Run {
  id: number;
  kind: "text" | "photos" | "federated" | "ask";
  status: RunStatus;
  base_model: string;
  base_model_sha256: string;
  /** The training configuration, JSON. */
  config: string;
  label: string | null;
  item_count: number;
  token_count: number;
  device: string;
  steps_done: number;
  train_loss: number | null;
  base_validation_loss: number | null;
  validation_loss: number | null;
  tokens_per_second: number | null;
  error: string | null;
  started_at: string;
  updated_at: string;
  /** Merkle root over the items it trained on. */
  items_root: string | null;
  /** A federated round's run: the global adapter it started from. */
  parent_sha256: string | null;
}

export interface Adapter {
  id: number;
  name: string;
  run_id: number | null;
  source: "trained" | "imported";
  base_model: string | null;
  base_model_sha256: string | null;
  sha256: string;
  rank: number;
  alpha: number;
  targets: string;
  path: string;
  created_at: string;
}

export interface RunSummary {
  run_id: number;
  outcome: "completed" | "paused" | "early_stopped";
  steps: number;
  total_steps: number;
  base_validation_loss: number | null;
  validation_loss: number | null;
  tokens_per_second: number;
  adapter_id: number | null;
  items: number;
  tokens: number;
}

export interface ModelChoice {
  name: string;
  kind: "text" | "vision";
  description: string;
  default: boolean;
  present: boolean;
}

export interface EmbedSummary {
  embedded: number;
  failed: number;
  cached: number;
  cancelled: boolean;
}

export interface PhotoTrainingRequest {
  fine_tune_blocks?: number | null;
  steps?: number | null;
}

export interface TaggerSummary {
  run_id: number;
  tagger_id: number;
  labels: string[];
  examples: number;
  held_out_accuracy: (number | null)[];
  thresholds: number[];
  model_sha256: string;
  fine_tune_loss: [number, number] | null;
  path: string;
}

export type Pass = "base" | "personalized";

export interface GenerateRequest {
  prompt: string;
  adapter_id?: number | null;
  compare?: boolean;
  model?: string | null;
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  /** Repetition penalty on the last 64 tokens, 1 (off) to 5 (default 1.1). */
  repeat_penalty?: number;
  raw?: boolean;
}

/** `GenerateEvent` in src-tauri/src/commands/try_it/models.rs. */
export type GenerateEvent =
  | { event: "loading"; model: string }
  | { event: "begin"; pass: Pass }
  | { event: "text"; pass: Pass; text: string }
  | {
      event: "end";
      pass: Pass;
      prompt_tokens: number;
      new_tokens: number;
      tokens_per_second: number;
    }
  | { event: "done" }
  | { event: "failed"; error: AppError };

export interface Suggestion {
  label: string;
  confidence: number;
  suggested: boolean;
}

export interface PhotoTags {
  item: Item;
  suggestions: Suggestion[];
}

export interface SimilarPhoto {
  item: Item;
  similarity: number;
}

/** `ParticipationPolicy` in crates/personalize/src/eligibility.rs. */
export interface ParticipationPolicy {
  require_power: boolean;
  require_idle: boolean;
  /** From hour (inclusive) to hour (exclusive), local time; may wrap midnight. */
  hours: [number, number] | null;
}

/** `Conditions`: what the device reports about itself now. */
export interface Conditions {
  on_power: boolean | null;
  idle: boolean | null;
  local_hour: number;
}

export interface Decision {
  eligible: boolean;
  reasons: string[];
}

/** `MembershipStatus` in crates/personalize/src/federation.rs. */
export interface MembershipStatus {
  id: number;
  server_url: string;
  federation_id: string;
  device_id: string;
  joined_at: string;
  rounds: number[];
  bytes_sent: number;
  epsilon_spent: number;
  epsilon_budget: number;
  delta: number;
  policy: ParticipationPolicy;
  eligible_now: Decision;
  log_size: number;
}

export interface FederationOverview {
  memberships: MembershipStatus[];
  conditions: Conditions;
}

/** A store `Membership` row, as join and leave return it. */
export interface Membership {
  id: number;
  server_url: string;
  federation_id: string;
  device_id: string;
  epsilon_budget: number;
  delta: number;
  joined_at: string;
  left_at: string | null;
}

export interface JoinFederationRequest {
  server_url: string;
  invite: string;
  certificate_path: string;
  epsilon_budget?: number;
  policy?: ParticipationPolicy;
}

/** `UploadRecord`: one upload, flattened with its federation. */
export interface UploadRecord {
  federation_id: string;
  server_url: string;
  delta: number;
  id: number;
  membership_id: number;
  round: number;
  bytes_sent: number;
  bytes_received: number;
  rho: number;
  epsilon: number;
  upload_sha256: string;
  global_version: number | null;
  run_id: number | null;
  uploaded_at: string;
}

export interface FederatedRoundRequest {
  membership?: number | null;
  model?: string | null;
  label?: string | null;
  steps?: number;
  batch_size?: number;
  seq_len?: number;
  learning_rate?: number;
  device?: "auto" | "cpu" | "cuda" | "metal";
  rounds?: number;
}

export interface RoundOutcome {
  round: number;
  bytes_sent: number;
  bytes_received: number;
  epsilon: number;
  global_version: number;
  run_id: number | null;
  upload_sha256: string;
  log_size: number;
}

/** `ParticipationSummary`: what a federated round job did. */
export interface ParticipationSummary {
  rounds: RoundOutcome[];
  epsilon_spent: number;
  epsilon_budget: number;
  delta: number;
  next_checkin_secs: number | null;
  cancelled: boolean;
}

/** `AuditOutcome`: one federation's transparency log, re-verified. */
export interface AuditOutcome {
  membership: number;
  federation_id: string;
  server_url: string;
  active: boolean;
  verified: boolean;
  checkpoints: number;
  rounds: number;
  commitments: number;
  adapters: number;
  log_size: number | null;
  log_root: string | null;
  /** Round parameters re-checked in the log. */
  parameters: number;
  /** Heads other devices posted that were compared (gossip); null when the server could not be asked. */
  gossip_heads: number | null;
  /** Why gossip could not be had. */
  gossip_note: string | null;
  /** [participations in the log, of them backed by their device's gossiped signed commitment]; null when not asked. */
  uploads_backed: [number, number] | null;
  /** Device uploads the log dropped or swapped ("device X in round N"). */
  contradicted_uploads: string[];
  /** What failed; "SPLIT VIEW: ..." when the log showed other devices another history, "UPLOAD CONTRADICTED: ..." when it dropped or swapped a device's upload. */
  error: string | null;
}

export interface LineageItem {
  sha256: string;
  /** `[item id, path]` while the item is still in the library. */
  item: [number, string] | null;
}

/** `AdapterLineage` in crates/personalize/src/lineage.rs. */
export interface AdapterLineage {
  adapter: Adapter;
  run: Run | null;
  items_root: { root: string; count: number } | null;
  items: LineageItem[];
  file_lineage: string | null;
  lineage_matches: boolean | null;
}

/** `PhotoTagger` in crates/store/src/taggers.rs. */
export interface PhotoTagger {
  id: number;
  run_id: number;
  model_sha256: string;
  sha256: string;
  labels: string[];
  path: string;
  created_at: string;
}

/** `TaggerLineage` in crates/personalize/src/lineage.rs. */
export interface TaggerLineage {
  tagger: PhotoTagger;
  run: Run;
  items_root: { root: string; count: number };
  items: LineageItem[];
  /** The head file's sha256 now (null when it is gone). */
  file_sha256: string | null;
  file_matches: boolean;
}

/** `Value` in crates/ask/src/run.rs: what a query computed. */
export type AskValue =
  | { type: "refusal" }
  | { type: "number"; value: number }
  /** A day, `YYYY-MM-DD`. */
  | { type: "date"; date: string }
  /** Items, listed in the answer's sources (which may show fewer). */
  | { type: "items"; total: number }
  | { type: "unknown"; reason: string };

/** `SourceItem` in crates/ask/src/run.rs: an item an answer came from. */
export interface SourceItem {
  id: number;
  kind: ItemKind;
  path: string;
  sha256: string;
  /** Photos: when taken; notes: when added. */
  date: string | null;
  labels: string[];
  /** Semantic search only: how close it is. */
  score?: number;
}

/** `ResolvedRange`: a date range as written and the days it meant. */
export interface ResolvedRange {
  range: string;
  span: { from: string; to: string };
}

/** `Translation` in crates/personalize/src/ask/translate.rs. */
export interface Translation {
  query: string;
  prompt_tokens: number;
  query_tokens: number;
  /** From the question to the query. */
  seconds: number;
  /** The grammar constraint's overhead per written token. */
  mask_ms_per_token: number;
}

/** `AskAnswer` in crates/personalize/src/ask/mod.rs. */
export interface AskAnswer {
  ask_id: number;
  question: string | null;
  /** As written (by the model or the person). */
  query: string;
  /** As it ran: canonical, labels as the library spells them. */
  canonical: string;
  value: AskValue;
  sources: SourceItem[];
  ranges: ResolvedRange[];
  notes: string[];
  /** Present when the model translated a question. */
  translation?: Translation;
}

/** `Correction` in crates/personalize/src/ask/mod.rs: a kept correction and its answer. */
export interface AskCorrectionAnswer {
  correction_id: number;
  ask_id: number;
  question: string | null;
  canonical: string;
  value: AskValue;
  sources: SourceItem[];
  ranges: ResolvedRange[];
  notes: string[];
}

/** `AskRecord` in crates/store/src/asks.rs. */
export interface AskRecord {
  id: number;
  /** Null when the person wrote the query. */
  question: string | null;
  query: string;
  asked_at: string;
}

/** `AskCorrection` in crates/store/src/asks.rs. */
export interface AskCorrection {
  id: number;
  ask_id: number;
  question: string | null;
  query: string;
  corrected_at: string;
}

/** `AskHistory` in src-tauri/src/commands/ask/models.rs. */
export interface AskHistory {
  asks: AskRecord[];
  corrections: AskCorrection[];
}

/** `AskTrainingRequest` in src-tauri/src/commands/ask/models.rs. */
export interface AskTrainingRequest {
  model?: string | null;
  steps?: number | null;
  device?: "auto" | "cpu" | "cuda" | "metal" | null;
}
