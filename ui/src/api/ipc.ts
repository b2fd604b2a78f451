// Typed wrappers over the app's commands: one function per command, so
// screens never spell a command name or argument key, and every failure
// arrives as an AppError.
import { Channel, convertFileSrc, invoke } from "@tauri-apps/api/core";
import type {
  Adapter,
  AskAnswer,
  AskCorrectionAnswer,
  AskHistory,
  AskTrainingRequest,
  AdapterLineage,
  PhotoTagger,
  TaggerLineage,
  AuditOutcome,
  FederatedRoundRequest,
  FederationOverview,
  JoinFederationRequest,
  Membership,
  ParticipationPolicy,
  ParticipationSummary,
  UploadRecord,
  AppError,
  EmbedSummary,
  GenerateEvent,
  GenerateRequest,
  AppPlatform,
  ImportSummary,
  Installed,
  Item,
  ItemQuery,
  JobEvent,
  JobId,
  JobInfo,
  LabelSummary,
  LibraryInfo,
  ModelChoice,
  PhotoTags,
  PhotoTrainingRequest,
  Run,
  RunSummary,
  RunView,
  SimilarPhoto,
  TaggerSummary,
  TextTrainingRequest,
  ErrorKind,
  Request,
  RequestDefaults,
} from "./types";

// Every ErrorKind, checked against the generated union: a kind added or
// removed in Rust fails the type check here.
const KIND_NAMES: Record<ErrorKind, true> = {
  invalid_input: true,
  not_found: true,
  busy: true,
  no_data: true,
  not_resumable: true,
  cancelled: true,
  model_missing: true,
  library: true,
  model: true,
  federation: true,
  privacy_budget: true,
  internal: true,
};
const KINDS = new Set<string>(Object.keys(KIND_NAMES));

export function isAppError(value: unknown): value is AppError {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.kind === "string" && KINDS.has(v.kind) && typeof v.message === "string";
}

/** Any thrown value as an AppError (the IPC layer itself rejects with strings). */
export function toAppError(value: unknown): AppError {
  if (isAppError(value)) return value;
  if (value instanceof Error) return { kind: "internal", message: value.message };
  return { kind: "internal", message: String(value) };
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (error) {
    throw toAppError(error);
  }
}

function channel<E>(onEvent: (event: E) => void): Channel<E> {
  const ch = new Channel<E>();
  ch.onmessage = onEvent;
  return ch;
}

/** The thumbnail URL of a photo, served by the app's `hearth-thumb` scheme. */
export function thumbnailUrl(item: Pick<Item, "thumbnail">): string | null {
  if (!item.thumbnail) return null;
  return convertFileSrc(item.thumbnail.replace(/^thumbnails\//, ""), "hearth-thumb");
}

export const api = {
  ping: () => call<string>("ping"),
  appPlatform: () => call<AppPlatform>("app_platform"),
  runningJobs: () => call<JobInfo[]>("running_jobs"),
  cancelJob: (id: JobId) => call<void>("cancel_job", { id }),
  /** Follows a running job from its first event (after a page reload). */
  attachJob: <T>(id: JobId, onEvent: (e: JobEvent<T>) => void) =>
    call<void>("attach_job", { id, onEvent: channel(onEvent) }),

  libraryInfo: () => call<LibraryInfo>("library_info"),
  listItems: (query: Request<ItemQuery> = {}) => call<Item[]>("list_items", { query }),
  getItem: (id: number) => call<Item>("get_item", { id }),
  itemText: (id: number) => call<string | null>("item_text", { id }),
  listLabels: () => call<LabelSummary[]>("list_labels"),
  addLabel: (id: number, name: string) => call<Item>("add_label", { id, name }),
  removeLabel: (id: number, name: string) => call<Item>("remove_label", { id, name }),
  removeItem: (id: number) => call<void>("remove_item", { id }),
  importFolders: (paths: string[], onEvent: (e: JobEvent<ImportSummary>) => void) =>
    call<JobId>("import_folders", { request: { paths }, onEvent: channel(onEvent) }),

  listModels: () => call<ModelChoice[]>("list_models"),
  requestDefaults: () => call<RequestDefaults>("request_defaults"),
  listRuns: () => call<RunView[]>("list_runs"),
  listAdapters: () => call<Adapter[]>("list_adapters"),
  startTextTraining: (request: Request<TextTrainingRequest>, onEvent: (e: JobEvent<RunSummary>) => void) =>
    call<JobId>("start_text_training", { request, onEvent: channel(onEvent) }),
  resumeTextTraining: (run: number, onEvent: (e: JobEvent<RunSummary>) => void) =>
    call<JobId>("resume_text_training", { run, onEvent: channel(onEvent) }),
  discardRun: (run: number) => call<void>("discard_run", { run }),
  installModel: (name: string, path: string, onEvent: (e: JobEvent<Installed>) => void) =>
    call<JobId>("install_model", { name, path, onEvent: channel(onEvent) }),
  embedPhotos: (onEvent: (e: JobEvent<EmbedSummary>) => void) =>
    call<JobId>("embed_photos", { onEvent: channel(onEvent) }),
  trainPhotoTagger: (request: Request<PhotoTrainingRequest>, onEvent: (e: JobEvent<TaggerSummary>) => void) =>
    call<JobId>("train_photo_tagger", { request, onEvent: channel(onEvent) }),
  resumePhotoTagger: (run: number, onEvent: (e: JobEvent<TaggerSummary>) => void) =>
    call<JobId>("resume_photo_tagger", { run, onEvent: channel(onEvent) }),

  generateText: (request: Request<GenerateRequest>, onEvent: (e: GenerateEvent) => void) =>
    call<JobId>("generate_text", { request, onEvent: channel(onEvent) }),
  suggestTags: (all = false) => call<PhotoTags[]>("suggest_tags", { all }),
  similarPhotos: (id: number, k = 8) => call<SimilarPhoto[]>("similar_photos", { id, k }),
  acceptTag: (id: number, label: string) => call<Item>("accept_tag", { id, label }),
  rejectTag: (id: number, label: string) => call<Item>("reject_tag", { id, label }),

  askQuestion: (question: string) => call<AskAnswer>("ask_question", { question }),
  askQuery: (query: string) => call<AskAnswer>("ask_query", { query }),
  correctAsk: (id: number, query: string) => call<AskCorrectionAnswer>("correct_ask", { id, query }),
  askHistory: () => call<AskHistory>("ask_history"),
  trainAsk: (request: Request<AskTrainingRequest>, onEvent: (e: JobEvent<RunSummary>) => void) =>
    call<JobId>("train_ask", { request, onEvent: channel(onEvent) }),

  federationStatus: () => call<FederationOverview>("federation_status"),
  joinFederation: (request: Request<JoinFederationRequest>) => call<Membership>("join_federation", { request }),
  leaveFederation: (membership: number) => call<Membership>("leave_federation", { membership }),
  federationHistory: () => call<UploadRecord[]>("federation_history"),
  setParticipationPolicy: (membership: number, policy: ParticipationPolicy) =>
    call<number>("set_participation_policy", { membership, policy }),
  startFederatedRound: (request: Request<FederatedRoundRequest>, onEvent: (e: JobEvent<ParticipationSummary>) => void) =>
    call<JobId>("start_federated_round", { request, onEvent: channel(onEvent) }),

  adapterLineage: (adapter: number) => call<AdapterLineage>("adapter_lineage", { adapter }),
  listPhotoTaggers: () => call<PhotoTagger[]>("list_photo_taggers"),
  photoTaggerLineage: (tagger: number) => call<TaggerLineage>("photo_tagger_lineage", { tagger }),
  auditFederations: () => call<AuditOutcome[]>("audit_federations"),
};
