// Generated from the Rust types by src-tauri/src/bindings.rs: do not edit.
// Regenerate with `HEARTH_WRITE_BINDINGS=1 cargo test -p hearth-app bindings`.

/**
 * A recorded adapter.
 */
export type Adapter = { 
/**
 * Row id.
 */
id: number, 
/**
 * Name.
 */
name: string, 
/**
 * Training run.
 */
run_id: number | null, 
/**
 * `trained` or `imported`.
 */
source: string, 
/**
 * Base model name.
 */
base_model: string | null, 
/**
 * Base model sha256.
 */
base_model_sha256: string | null, 
/**
 * Weights sha256.
 */
sha256: string, 
/**
 * LoRA rank.
 */
rank: number, 
/**
 * LoRA alpha.
 */
alpha: number, 
/**
 * Adapted projections (`q_proj`, ...), as the adapter names them.
 */
targets: Array<string>, 
/**
 * Folder relative to the library.
 */
path: string, 
/**
 * When it was recorded.
 */
created_at: string, };

/**
 * Where an adapter came from.
 */
export type AdapterLineage = { 
/**
 * The adapter.
 */
adapter: Adapter, 
/**
 * The run that trained it (found by id, or by lineage hash for an
 * imported copy of an adapter trained in this library).
 */
run: Run | null, 
/**
 * The run's commitment to its items.
 */
items_root: ItemSetRoot | null, 
/**
 * The items, sorted by hash.
 */
items: Array<LineageItem>, 
/**
 * The lineage hash in the adapter's file.
 */
file_lineage: string | null, 
/**
 * Whether recomputing it from the run gives the file's value.
 */
lineage_matches: boolean | null, };

/**
 * What an [`AppError`] looks like to the front end: `{kind, message}`.
 * Its own type so the TypeScript declaration is generated with the rest
 * (`AppError` in `ui/src/api/bindings.ts`).
 */
export type AppError = { 
/**
 * Which kind of failure, for the front end to act on.
 */
kind: ErrorKind, 
/**
 * The sentence for the person.
 */
message: string, };

/**
 * What the app runs on, for what the front end does differently on a
 * phone (pausing training when the app goes to the background).
 */
export type AppPlatform = { 
/**
 * Android or iOS.
 */
mobile: boolean, };

/**
 * An answer, computed by code from the library.
 */
export type AskAnswer = { 
/**
 * The recorded ask (correct it with [`correct_ask`]).
 */
ask_id: number, 
/**
 * The question, if there was one.
 */
question: string | null, 
/**
 * The query as written.
 */
query: string, 
/**
 * The query as it ran: canonical, labels as the library spells them.
 */
canonical: string, 
/**
 * The result.
 */
value: AskValue, 
/**
 * The items it came from.
 */
sources: Array<SourceItem>, 
/**
 * Each date range and the days it meant.
 */
ranges: Array<ResolvedRange>, 
/**
 * Things worth knowing about the answer.
 */
notes: Array<string>, 
/**
 * How the model translated the question, when it did.
 */
translation?: Translation, };

/**
 * A correction: the query an ask should have run.
 */
export type AskCorrection = { 
/**
 * Row id.
 */
id: number, 
/**
 * The ask corrected.
 */
ask_id: number, 
/**
 * That ask's question, if it had one.
 */
question: string | null, 
/**
 * The corrected query, canonical.
 */
query: string, 
/**
 * When (UTC, ISO 8601).
 */
corrected_at: string, };

/**
 * A stored correction and the answer of the corrected query.
 */
export type AskCorrectionAnswer = { 
/**
 * The correction's id.
 */
correction_id: number, 
/**
 * The ask corrected.
 */
ask_id: number, 
/**
 * Its question.
 */
question: string | null, 
/**
 * The corrected query, canonical (as stored).
 */
canonical: string, 
/**
 * What it answers.
 */
value: AskValue, 
/**
 * The items it came from.
 */
sources: Array<SourceItem>, 
/**
 * Each date range and the days it meant.
 */
ranges: Array<ResolvedRange>, 
/**
 * Things worth knowing about the answer.
 */
notes: Array<string>, };

/**
 * Every ask and every correction, oldest first (`hearth ask history`).
 */
export type AskHistory = { 
/**
 * The asks.
 */
asks: Array<AskRecord>, 
/**
 * The corrections, each naming its ask.
 */
corrections: Array<AskCorrection>, };

/**
 * One answered ask.
 */
export type AskRecord = { 
/**
 * Row id.
 */
id: number, 
/**
 * The question in the person's words; `None` when they wrote the
 * query themselves.
 */
question: string | null, 
/**
 * The query that ran, in canonical form.
 */
query: string, 
/**
 * When (UTC, ISO 8601).
 */
asked_at: string, };

/**
 * A translator training as a person asks for it (the app's button,
 * `hearth ask train`'s flags); absent fields are [`AskTraining`]'s
 * defaults.
 */
export type AskTrainingRequest = { 
/**
 * Base model: registry name or path (default: the default text model).
 */
model: string | null, 
/**
 * Optimizer steps (default: [`AskTraining::default_config`]'s).
 */
steps: number | null, 
/**
 * `auto`, `cpu`, `cuda` or `metal` (default `auto`).
 */
device: string | null, };

/**
 * What a query computed.
 */
export type AskValue = { "type": "refusal" } | { "type": "number", 
/**
 * It.
 */
value: number, } | { "type": "date", 
/**
 * It, `YYYY-MM-DD`.
 */
date: string, } | { "type": "items", 
/**
 * How many match in all (the sources may show fewer).
 */
total: number, } | { "type": "unknown", 
/**
 * Why.
 */
reason: string, };

/**
 * The result of re-verifying one membership's stored log evidence.
 */
export type AuditOutcome = { 
/**
 * The membership.
 */
membership: number, 
/**
 * The federation.
 */
federation_id: string, 
/**
 * Its server.
 */
server_url: string, 
/**
 * Whether this device still takes part.
 */
active: boolean, 
/**
 * Whether everything verified.
 */
verified: boolean, 
/**
 * Signed tree heads replayed.
 */
checkpoints: number, 
/**
 * Rounds whose evidence was re-checked.
 */
rounds: number, 
/**
 * This device's upload commitments re-checked.
 */
commitments: number, 
/**
 * Published global adapters re-checked.
 */
adapters: number, 
/**
 * Entries in the log at the latest verified head.
 */
log_size: number | null, 
/**
 * The latest verified root, hex.
 */
log_root: string | null, 
/**
 * Round parameters re-checked in the log.
 */
parameters: number, 
/**
 * Heads other devices posted that were compared with this device's
 * (gossip, for active memberships); `None` when the server could not
 * be asked.
 */
gossip_heads: number | null, 
/**
 * Why gossip could not be had, when it could not (not a failure of
 * the audit: the stored evidence still verified).
 */
gossip_note: string | null, 
/**
 * The log's participation entries of the federation, and how many of
 * them are backed by their device's gossiped signed commitment (for
 * active memberships; `None` when the server could not be asked).
 */
uploads_backed: [number, number] | null, 
/**
 * Every device commitment the log contradicts (a dropped or swapped
 * upload), one line each; the audit then fails.
 */
contradicted_uploads: Array<string>, 
/**
 * What failed, when something did (a `SPLIT VIEW: ...` when the log
 * showed other devices another history).
 */
error: string | null, };

/**
 * What the device reports about itself now.
 */
export type Conditions = { 
/**
 * On mains power (`None`: cannot tell).
 */
on_power: boolean | null, 
/**
 * Idle enough to train (`None`: cannot tell).
 */
idle: boolean | null, 
/**
 * The local hour, 0..24.
 */
local_hour: number, };

/**
 * Days from `from` to `to`, both included.
 */
export type DateSpan = { 
/**
 * First day.
 */
from: string, 
/**
 * Last day.
 */
to: string, };

/**
 * The decision, with the reasons against when it is no.
 */
export type Decision = { 
/**
 * Whether the device may take part now.
 */
eligible: boolean, 
/**
 * Why not, in plain words.
 */
reasons: Array<string>, };

/**
 * What an embedding pass did.
 */
export type EmbedSummary = { 
/**
 * Photos embedded now.
 */
embedded: number, 
/**
 * Photos that no longer decode (marked, skipped).
 */
failed: number, 
/**
 * Photos already embedded before.
 */
cached: number, 
/**
 * Whether it was cancelled.
 */
cancelled: boolean, };

/**
 * What kind of failure an [`AppError`] is.
 */
export type ErrorKind = "invalid_input" | "not_found" | "busy" | "no_data" | "not_resumable" | "cancelled" | "model_missing" | "library" | "model" | "federation" | "privacy_budget" | "internal";

/**
 * Taking part in rounds. Defaults are [`Participation::default`]'s, for
 * one round.
 */
export type FederatedRoundRequest = { 
/**
 * The membership (the only one when absent).
 */
membership: number | null, 
/**
 * Base model: registry name or path (default: the federation's).
 */
model: string | null, 
/**
 * Train on texts with this label only.
 */
label: string | null, 
/**
 * Local training steps.
 */
steps: number, 
/**
 * Sequences per step.
 */
batch_size: number, 
/**
 * Tokens per sequence.
 */
seq_len: number, 
/**
 * Local learning rate.
 */
learning_rate: number, 
/**
 * `auto`, `cpu`, `cuda` or `metal`.
 */
device: string, 
/**
 * Rounds to take part in before stopping (`None`: until cancelled).
 */
rounds: number | null, 
/**
 * Check in once; stop when there is no round for this device now.
 */
once: boolean, };

/**
 * The Federation screen's state.
 */
export type FederationOverview = { 
/**
 * Active memberships (none: federation is off).
 */
memberships: Array<MembershipStatus>, 
/**
 * What the device reports about itself now (power, idle, hour).
 */
conditions: Conditions, };

/**
 * One file's line in the report.
 */
export type FileReport = { 
/**
 * The file's path (lossily shown if not UTF-8).
 */
path: string, 
/**
 * What happened.
 */
outcome: Outcome, 
/**
 * Photo or text, when known.
 */
kind?: ItemKind, 
/**
 * The library item it is (or already was).
 */
item_id?: number, 
/**
 * Why it was skipped or failed, or what it duplicates.
 */
reason?: string, };

/**
 * How a generation job ended.
 */
export type GenerateEnd = { "event": "done" } | { "event": "failed", 
/**
 * Why.
 */
error: AppError, };

/**
 * A generation's events, each tagged by `event`: the library's
 * [`GenerationEvent`]s as they are (`loading`, `begin`, `text`, `end`),
 * then how the job ended.
 */
export type GenerateEvent = GenerationEvent | GenerateEnd;

/**
 * A generation request. Its [`Default`] is what a person gets without
 * choosing: sampled (temperature 0.7, nucleus 0.9, repetition penalty
 * 1.1 over the last 64 tokens), at most 200 new tokens, seeded so the
 * same request gives the same text; greedy decoding of a small model
 * tends to loop on a phrase.
 */
export type GenerateRequest = { 
/**
 * The prompt: a user turn for chat models, raw text with `raw`.
 */
prompt: string, 
/**
 * The personalized pass uses this adapter.
 */
adapter_id: number | null, 
/**
 * With an adapter, run the base model first, for comparison.
 */
compare: boolean, 
/**
 * Base model, by registry name or path (default: the adapter's run's
 * model, else the default text model).
 */
model: string | null, 
/**
 * Most new tokens per pass, 1 to [`MAX_NEW_TOKENS`].
 */
max_tokens: number, 
/**
 * Sampling temperature, 0 (greedy) or more.
 */
temperature: number, 
/**
 * Nucleus sampling threshold, in (0, 1].
 */
top_p: number, 
/**
 * Sampling seed.
 */
seed: number, 
/**
 * Repetition penalty on the last 64 tokens, 1 (off) or more.
 */
repeat_penalty: number, 
/**
 * Continue the prompt as raw text, without the chat template.
 */
raw: boolean, };

/**
 * What a generation reports as it goes, tagged by `event` in serde.
 */
export type GenerationEvent = { "event": "loading", 
/**
 * Its name or path.
 */
model: string, } | { "event": "begin", 
/**
 * Which.
 */
pass: Pass, } | { "event": "text", 
/**
 * Which.
 */
pass: Pass, 
/**
 * The new piece.
 */
text: string, } | { "event": "end", 
/**
 * Which.
 */
pass: Pass, 
/**
 * Prompt tokens.
 */
prompt_tokens: number, 
/**
 * New tokens.
 */
new_tokens: number, 
/**
 * Decoding speed.
 */
tokens_per_second: number, };

/**
 * An import's outcome: counts, and the files that were skipped or failed
 * (the library's full report lists every file, which for a large folder
 * is more than a screen needs).
 */
export type ImportSummary = { 
/**
 * New items.
 */
imported: number, 
/**
 * Already in the library (moved ones included).
 */
already_present: number, 
/**
 * Of those, moved.
 */
moved: number, 
/**
 * Not photos or texts.
 */
skipped: number, 
/**
 * Could not be imported.
 */
failed: number, 
/**
 * Whether it was cancelled.
 */
cancelled: boolean, 
/**
 * Failed files first, then skipped ones, at most [`MAX_PROBLEMS`].
 */
problems: Array<FileReport>, };

/**
 * A model installed into the Hearth model cache.
 */
export type Installed = { 
/**
 * The registry name.
 */
name: string, 
/**
 * Where it now is: the model file, or the folder of a several-file
 * model.
 */
path: string, 
/**
 * Bytes copied.
 */
bytes: number, };

/**
 * One photo or text in the library.
 */
export type Item = { 
/**
 * Row id, stable for the life of the item.
 */
id: number, 
/**
 * Photo or text.
 */
kind: ItemKind, 
/**
 * sha256 of the original's bytes, lower-case hex.
 */
sha256: string, 
/**
 * Where the original was last seen.
 */
path: string, 
/**
 * Size of the original in bytes.
 */
size_bytes: number, 
/**
 * IANA media type (`image/jpeg`, `text/markdown`, ...).
 */
media_type: string, 
/**
 * Photos: displayed width in pixels (EXIF orientation applied).
 */
width: number | null, 
/**
 * Photos: displayed height in pixels.
 */
height: number | null, 
/**
 * Photos: EXIF capture time (ISO 8601, offset when known).
 */
captured_at: string | null, 
/**
 * Photos: thumbnail file relative to the library folder.
 */
thumbnail: string | null, 
/**
 * Text: length in characters.
 */
text_chars: number | null, 
/**
 * When the item entered the library (UTC, ISO 8601).
 */
imported_at: string, 
/**
 * The item's labels, sorted by name.
 */
labels: Array<string>, };

/**
 * What an item is.
 */
export type ItemKind = "photo" | "text";

/**
 * Which items to list.
 */
export type ItemQuery = { 
/**
 * `photo` or `text`.
 */
kind: string | null, 
/**
 * Only items with this label (case-insensitive).
 */
label: string | null, 
/**
 * Only items whose path or labels contain this text
 * (case-insensitive).
 */
search: string | null, };

/**
 * The public commitment to a set of items: what lineage records keep.
 */
export type ItemSetRoot = { 
/**
 * The Merkle root over the sorted items (hex).
 */
root: string, 
/**
 * How many distinct items the set holds.
 */
count: number, };

/**
 * One progress event of a job whose result is `T`. Serialized with an
 * `event` tag: `{"event": "advance", "done": 3}`.
 */
export type JobEvent<T> = { "event": "begin", 
/**
 * Its name.
 */
task: string, 
/**
 * Units expected, when known.
 */
total: number | null, } | { "event": "advance", 
/**
 * Units done.
 */
done: number, } | { "event": "metric", 
/**
 * The metric.
 */
name: string, 
/**
 * Its step.
 */
step: number, 
/**
 * Its value.
 */
value: number, } | { "event": "note", 
/**
 * The sentence.
 */
message: string, } | { "event": "end" } | { "event": "done", 
/**
 * What it produced.
 */
result: T, } | { "event": "failed", 
/**
 * Why.
 */
error: AppError, };

/**
 * A running job, as `running_jobs` reports it.
 */
export type JobInfo = { 
/**
 * Its id.
 */
id: number, 
/**
 * What it does.
 */
kind: JobKind, 
/**
 * Whether cancellation was asked for.
 */
cancelling: boolean, };

/**
 * What a job does; at most one job of each kind runs at a time (two
 * trainings would halve each other's speed, two imports would race for
 * the library's import lock).
 */
export type JobKind = "import" | "embed" | "train_text" | "train_photos" | "train_ask" | "generate" | "federate" | "install_model";

/**
 * Joining a federation, as the person fills it in.
 */
export type JoinFederationRequest = { 
/**
 * `https://host:port`.
 */
server_url: string, 
/**
 * The one-time invite token from the operator.
 */
invite: string, 
/**
 * The server's certificate file (PEM) from the operator.
 */
certificate_path: string, 
/**
 * Total privacy budget, epsilon at delta 1e-5.
 */
epsilon_budget: number, 
/**
 * When the device may take part (default: on power, when idle).
 */
policy: ParticipationPolicy, };

/**
 * A label and how many items carry it.
 */
export type LabelSummary = { 
/**
 * The label as first written.
 */
name: string, 
/**
 * Items carrying it.
 */
items: number, };

/**
 * Where the library is and what is in it.
 */
export type LibraryInfo = { 
/**
 * The library folder.
 */
path: string, 
/**
 * Counts and sizes.
 */
stats: LibraryStats, };

/**
 * Counts and sizes for `hearth library stats`.
 */
export type LibraryStats = { 
/**
 * Number of photos.
 */
photos: number, 
/**
 * Number of texts.
 */
texts: number, 
/**
 * Total size of the photo originals.
 */
photo_bytes: number, 
/**
 * Total size of the text originals.
 */
text_bytes: number, 
/**
 * Total characters of text.
 */
text_chars: number, 
/**
 * Distinct labels.
 */
labels: number, 
/**
 * Items with at least one label.
 */
labelled_items: number, 
/**
 * Bytes used by the database (including its write-ahead log).
 */
database_bytes: number, 
/**
 * Bytes used by thumbnails.
 */
thumbnail_bytes: number, };

/**
 * One item an adapter learned from.
 */
export type LineageItem = { 
/**
 * Its content hash (what the run recorded).
 */
sha256: string, 
/**
 * The library item with that content now, if it is still there.
 */
item: [number, string] | null, };

/**
 * A federation this device joined.
 */
export type Membership = { 
/**
 * Row id.
 */
id: number, 
/**
 * The server.
 */
server_url: string, 
/**
 * The federation.
 */
federation_id: string, 
/**
 * This device's id.
 */
device_id: string, 
/**
 * The client's record (JSON).
 */
record: string, 
/**
 * Total epsilon allowed.
 */
epsilon_budget: number, 
/**
 * At this delta.
 */
delta: number, 
/**
 * Participation policy (JSON).
 */
policy: string, 
/**
 * When it joined (UTC).
 */
joined_at: string, 
/**
 * When it left, if it did.
 */
left_at: string | null, };

/**
 * A membership as the person sees it.
 */
export type MembershipStatus = { 
/**
 * The membership (`hearth fed leave ID`).
 */
id: number, 
/**
 * The server.
 */
server_url: string, 
/**
 * The federation.
 */
federation_id: string, 
/**
 * This device's id in it.
 */
device_id: string, 
/**
 * When it joined (UTC).
 */
joined_at: string, 
/**
 * The rounds this device uploaded to, oldest first.
 */
rounds: Array<number>, 
/**
 * Bytes sent over every round.
 */
bytes_sent: number, 
/**
 * Privacy spent so far: epsilon at `delta` (0 before any upload).
 */
epsilon_spent: number, 
/**
 * The budget: total epsilon allowed at `delta`.
 */
epsilon_budget: number, 
/**
 * The delta both are stated at.
 */
delta: number, 
/**
 * When the device may take part.
 */
policy: ParticipationPolicy, 
/**
 * Whether it may right now, and why not.
 */
eligible_now: Decision, 
/**
 * Entries in the server's transparency log as last verified by this
 * device (0 before its first round).
 */
log_size: number, };

/**
 * A base model the person can choose.
 */
export type ModelChoice = { 
/**
 * Registry name.
 */
name: string, 
/**
 * `text` or `vision`.
 */
kind: string, 
/**
 * One line about it.
 */
description: string, 
/**
 * The default of its kind.
 */
default: boolean, 
/**
 * Whether its files are on this machine.
 */
present: boolean, 
/**
 * Whether it can be installed from a copy the person has
 * (`install_model`): the registry pins its files.
 */
installable: boolean, 
/**
 * Whether that copy is a folder of several files (else one file).
 */
folder: boolean, };

/**
 * What happened to one file.
 */
export type Outcome = "imported" | "already_present" | "moved" | "skipped" | "failed";

/**
 * The person's rules for taking part.
 */
export type ParticipationPolicy = { 
/**
 * Only on mains power.
 */
require_power: boolean, 
/**
 * Only when the machine is idle.
 */
require_idle: boolean, 
/**
 * Only from this hour (inclusive) to that hour (exclusive), local
 * time; may wrap midnight (22 -> 6). `None`: any time.
 */
hours: [number, number] | null, };

/**
 * What [`participate`] did.
 */
export type ParticipationSummary = { 
/**
 * The rounds contributed to, verified in the server's log.
 */
rounds: Array<RoundOutcome>, 
/**
 * Privacy spent in this membership so far, epsilon at `delta`.
 */
epsilon_spent: number, 
/**
 * The budget.
 */
epsilon_budget: number, 
/**
 * The delta.
 */
delta: number, 
/**
 * With `once`: no round now; the server asked to come back in this
 * many seconds.
 */
next_checkin_secs: number | null, 
/**
 * Stopped because it was asked to (between rounds).
 */
cancelled: boolean, };

/**
 * Which side a completion is for.
 */
export type Pass = "base" | "personalized";

/**
 * A recorded photo tagger.
 */
export type PhotoTagger = { 
/**
 * Row id.
 */
id: number, 
/**
 * The run that trained it.
 */
run_id: number, 
/**
 * The network its embeddings come from.
 */
model_sha256: string, 
/**
 * sha256 of the head file's bytes when it was written.
 */
sha256: string, 
/**
 * The labels it suggests.
 */
labels: Array<string>, 
/**
 * The head file, relative to the library folder.
 */
path: string, 
/**
 * When it was recorded.
 */
created_at: string, };

/**
 * Tag suggestions for one photo.
 */
export type PhotoTags = { 
/**
 * The photo (for its thumbnail and labels).
 */
item: Item, 
/**
 * Labels with calibrated confidence, most confident first.
 */
suggestions: Array<Suggestion>, };

/**
 * A photo tagger training request; absent fields are the library's
 * defaults.
 */
export type PhotoTrainingRequest = { 
/**
 * Fine-tune this many of the network's last blocks first (`None`: the
 * head alone, on frozen embeddings).
 */
fine_tune_blocks: number | null, 
/**
 * Fine-tuning steps (default: [`FineTuneConfig::default`]'s).
 */
steps: number | null, };

/**
 * What each form starts with: the library's defaults, so the front end
 * declares none of its own.
 */
export type RequestDefaults = { 
/**
 * Training a text adapter (`hearth train text`'s).
 */
text_training: TextTrainingRequest, 
/**
 * Joining a federation (`hearth fed join`'s budget and policy).
 */
join_federation: JoinFederationRequest, 
/**
 * Taking part in a federated round (`hearth fed run`'s, one round).
 */
federated_round: FederatedRoundRequest, 
/**
 * Generating text (`hearth generate`'s: sampled, seeded).
 */
generate: GenerateRequest, };

/**
 * A range as written and the days it meant.
 */
export type ResolvedRange = { 
/**
 * As written (`last_summer`).
 */
range: string, 
/**
 * The days.
 */
span: DateSpan, };

/**
 * One round this device contributed to.
 */
export type RoundOutcome = { 
/**
 * The round.
 */
round: number, 
/**
 * Bytes sent (every message of the round).
 */
bytes_sent: number, 
/**
 * Bytes received (the global adapter included).
 */
bytes_received: number, 
/**
 * Epsilon this round alone spent.
 */
epsilon: number, 
/**
 * The global version the round published.
 */
global_version: number, 
/**
 * The local training run.
 */
run_id: number | null, 
/**
 * SHA-256 of the masked upload as sent, hex.
 */
upload_sha256: string, 
/**
 * Entries in the transparency log that showed this round.
 */
log_size: number, };

/**
 * A recorded run.
 */
export type Run = { 
/**
 * Row id.
 */
id: number, 
/**
 * `text`, `photos`, `federated` or `ask`.
 */
kind: string, 
/**
 * Where it stands.
 */
status: RunStatus, 
/**
 * The base model as named.
 */
base_model: string, 
/**
 * Its sha256.
 */
base_model_sha256: string, 
/**
 * Training configuration, JSON.
 */
config: string, 
/**
 * Data selection label.
 */
label: string | null, 
/**
 * Items trained on.
 */
item_count: number, 
/**
 * Tokens of text.
 */
token_count: number, 
/**
 * Device.
 */
device: string, 
/**
 * Optimizer steps done.
 */
steps_done: number, 
/**
 * Last training loss.
 */
train_loss: number | null, 
/**
 * Held-out loss of the base model.
 */
base_validation_loss: number | null, 
/**
 * Held-out loss with the adapter.
 */
validation_loss: number | null, 
/**
 * Training throughput.
 */
tokens_per_second: number | null, 
/**
 * Why it failed.
 */
error: string | null, 
/**
 * Start time (UTC).
 */
started_at: string, 
/**
 * Last update (UTC).
 */
updated_at: string, 
/**
 * Merkle root (hex) of the sorted sha256s of the items trained on.
 */
items_root: string | null, 
/**
 * The global adapter a federated round started from.
 */
parent_sha256: string | null, };

/**
 * Where a run stands.
 */
export type RunStatus = "running" | "paused" | "completed" | "early_stopped" | "failed";

/**
 * How a run went.
 */
export type RunSummary = { 
/**
 * The run.
 */
run_id: number, 
/**
 * How this call ended.
 */
outcome: TrainingOutcome, 
/**
 * Steps done in total.
 */
steps: number, 
/**
 * Steps planned.
 */
total_steps: number, 
/**
 * Held-out loss of the base model.
 */
base_validation_loss: number | null, 
/**
 * Held-out loss with the adapter.
 */
validation_loss: number | null, 
/**
 * Throughput of this call.
 */
tokens_per_second: number, 
/**
 * The adapter, once training finished.
 */
adapter_id: number | null, 
/**
 * Items trained on.
 */
items: number, 
/**
 * Tokens of text.
 */
tokens: number, };

/**
 * A run as the Personalize screen lists it: the library's record, and
 * what its JSON configuration says that the screen needs, read in Rust.
 */
export type RunView = { 
/**
 * Steps it was asked for (text and Ask translator runs).
 */
total_steps: number | null, 
/**
 * Row id.
 */
id: number, 
/**
 * `text`, `photos`, `federated` or `ask`.
 */
kind: string, 
/**
 * Where it stands.
 */
status: RunStatus, 
/**
 * The base model as named.
 */
base_model: string, 
/**
 * Its sha256.
 */
base_model_sha256: string, 
/**
 * Training configuration, JSON.
 */
config: string, 
/**
 * Data selection label.
 */
label: string | null, 
/**
 * Items trained on.
 */
item_count: number, 
/**
 * Tokens of text.
 */
token_count: number, 
/**
 * Device.
 */
device: string, 
/**
 * Optimizer steps done.
 */
steps_done: number, 
/**
 * Last training loss.
 */
train_loss: number | null, 
/**
 * Held-out loss of the base model.
 */
base_validation_loss: number | null, 
/**
 * Held-out loss with the adapter.
 */
validation_loss: number | null, 
/**
 * Training throughput.
 */
tokens_per_second: number | null, 
/**
 * Why it failed.
 */
error: string | null, 
/**
 * Start time (UTC).
 */
started_at: string, 
/**
 * Last update (UTC).
 */
updated_at: string, 
/**
 * Merkle root (hex) of the sorted sha256s of the items trained on.
 */
items_root: string | null, 
/**
 * The global adapter a federated round started from.
 */
parent_sha256: string | null, };

/**
 * A photo like another.
 */
export type SimilarPhoto = { 
/**
 * The photo.
 */
item: Item, 
/**
 * Cosine similarity of the embeddings.
 */
similarity: number, };

/**
 * One library item an answer came from.
 */
export type SourceItem = { 
/**
 * Its id in the library.
 */
id: number, 
/**
 * Photo or text.
 */
kind: ItemKind, 
/**
 * Where the original was last seen.
 */
path: string, 
/**
 * Its content hash.
 */
sha256: string, 
/**
 * Its date and time (photos: when taken; notes: when added).
 */
date: string | null, 
/**
 * Its labels.
 */
labels: Array<string>, 
/**
 * For semantic search: how close it is.
 */
score?: number, };

/**
 * One suggestion.
 */
export type Suggestion = { 
/**
 * The label.
 */
label: string, 
/**
 * Calibrated probability that the photo has it.
 */
confidence: number, 
/**
 * Whether it clears the label's threshold, for a label that held-out
 * photos say was learned (better than chance): a coin flip is shown
 * with its confidence but never marked.
 */
suggested: boolean, };

/**
 * Where a photo tagger came from.
 */
export type TaggerLineage = { 
/**
 * The tagger.
 */
tagger: PhotoTagger, 
/**
 * The run that trained it.
 */
run: Run, 
/**
 * The run's commitment to its items.
 */
items_root: ItemSetRoot, 
/**
 * The items, sorted by hash.
 */
items: Array<LineageItem>, 
/**
 * sha256 of the head file now (None when it is gone).
 */
file_sha256: string | null, 
/**
 * Whether that is the hash recorded when it was trained.
 */
file_matches: boolean, };

/**
 * A trained tagger and how it was trained.
 */
export type TaggerSummary = { 
/**
 * The run recorded for it.
 */
run_id: number, 
/**
 * The tagger recorded for it (`hearth photos lineage`).
 */
tagger_id: number, 
/**
 * Labels learned.
 */
labels: Array<string>, 
/**
 * Photos with a known status for at least one label.
 */
examples: number, 
/**
 * Held-out accuracy per label (None when too few examples).
 */
held_out_accuracy: Array<number | null>, 
/**
 * Per-label thresholds.
 */
thresholds: Array<number>, 
/**
 * The model the tagger reads embeddings of: the base network's sha256,
 * or the fine-tuned one's.
 */
model_sha256: string, 
/**
 * Fine-tuning's loss over every training view, before and after.
 */
fine_tune_loss: [number, number] | null, 
/**
 * Where the head was saved.
 */
path: string, 
/**
 * Photos embedded with the base network just before this training
 * ([`train_new_tagger`]; 0 otherwise).
 */
newly_embedded: number, };

/**
 * A projection LoRA can adapt.
 */
export type Target = "q_proj" | "k_proj" | "v_proj" | "o_proj" | "gate_proj" | "up_proj" | "down_proj";

/**
 * A text training request. Every field has the library's default
 * ([`TrainConfig::default`]), so a face sends only what the person chose.
 */
export type TextTrainingRequest = { 
/**
 * Base model: registry name or path (default: the default text model).
 */
model: string | null, 
/**
 * Train on texts with this label only (default: every text).
 */
label: string | null, 
/**
 * Optimizer steps.
 */
steps: number, 
/**
 * LoRA rank.
 */
rank: number, 
/**
 * LoRA alpha (the update is scaled by alpha / rank).
 */
alpha: number, 
/**
 * LoRA dropout.
 */
dropout: number, 
/**
 * Projections to adapt.
 */
targets: Array<Target>, 
/**
 * Sequences per micro-batch.
 */
batch_size: number, 
/**
 * Tokens per sequence.
 */
seq_len: number, 
/**
 * Micro-batches per step.
 */
grad_accumulation: number, 
/**
 * Peak learning rate.
 */
learning_rate: number, 
/**
 * Warm-up steps (at most `steps`).
 */
warmup_steps: number, 
/**
 * Steps between held-out evaluations.
 */
eval_every: number, 
/**
 * Stop after this many evaluations without improvement (never when
 * absent).
 */
patience: number | null, 
/**
 * Steps between checkpoints.
 */
checkpoint_every: number, 
/**
 * Seed for initialisation, data order and dropout.
 */
seed: number, 
/**
 * How the frozen base weights are held: `f32`, `bf16` or `f16`.
 */
base_dtype: string, 
/**
 * `auto`, `cpu`, `cuda` or `metal`.
 */
device: string, };

/**
 * How a call to [`train`] ended.
 */
export type TrainingOutcome = "completed" | "paused" | "early_stopped";

/**
 * What the translation of one question cost and produced.
 */
export type Translation = { 
/**
 * The query the model wrote.
 */
query: string, 
/**
 * Tokens in the prompt.
 */
prompt_tokens: number, 
/**
 * Tokens the model wrote.
 */
query_tokens: number, 
/**
 * Seconds from the question to the query (prompt and decoding).
 */
seconds: number, 
/**
 * Milliseconds per written token spent computing grammar masks: the
 * constraint's overhead.
 */
mask_ms_per_token: number, };

/**
 * One upload, with the federation it went to.
 */
export type UploadRecord = { 
/**
 * The federation.
 */
federation_id: string, 
/**
 * Its server.
 */
server_url: string, 
/**
 * The delta of its epsilon.
 */
delta: number, 
/**
 * Row id.
 */
id: number, 
/**
 * The membership.
 */
membership_id: number, 
/**
 * The round.
 */
round: number, 
/**
 * Bytes sent.
 */
bytes_sent: number, 
/**
 * Bytes received.
 */
bytes_received: number, 
/**
 * zCDP rho spent.
 */
rho: number, 
/**
 * Epsilon of this round alone.
 */
epsilon: number, 
/**
 * sha256 of the masked upload.
 */
upload_sha256: string, 
/**
 * Global version after the round.
 */
global_version: number | null, 
/**
 * The local training run.
 */
run_id: number | null, 
/**
 * When (UTC).
 */
uploaded_at: string, };
