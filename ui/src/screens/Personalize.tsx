// The Personalize screen: a text adapter (choose the data, start, pause,
// resume, cancel, progress with ETA, the live loss curve, run history) and
// the photo tagger (embed, train, optionally fine-tune the last blocks).
import { useState } from "preact/hooks";
import { api, toAppError } from "../api/ipc";
import type { AppError, EmbedSummary, Request, RunSummary, RunView, TaggerSummary, TextTrainingRequest } from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { ModelSetup } from "../components/ModelSetup";
import { LossChart } from "../components/LossChart";
import { ProgressBar } from "../components/ProgressBar";
import { fileName } from "../lib/progress";
import { usePauseInBackground } from "../lib/usePauseInBackground";
import { useJob, useLoad } from "../lib/useJob";

export function Personalize({ active }: { active: boolean }) {
  const runs = useLoad(() => api.listRuns(), [], active);
  return (
    <section class="screen personalize" aria-labelledby="personalize-title">
      <h2 id="personalize-title">Personalize</h2>
      <ModelSetup />
      <TextTraining runs={runs.value ?? []} onRunsChanged={() => void runs.reload()} active={active} />
      <PhotoTraining runs={runs.value ?? []} onRunsChanged={() => void runs.reload()} />
      <RunHistory runs={runs.value ?? []} error={runs.error} />
    </section>
  );
}

function TextTraining({ runs, onRunsChanged, active }: { runs: RunView[]; onRunsChanged: () => void; active: boolean }) {
  // The form starts from the library's defaults (`request_defaults`);
  // only what the person changes is kept here.
  const defaults = useLoad(() => api.requestDefaults(), []);
  const [edits, setEdits] = useState<Request<TextTrainingRequest>>({});
  const request: Request<TextTrainingRequest> = { ...defaults.value?.text_training, ...edits };
  const [error, setError] = useState<AppError | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const models = useLoad(() => api.listModels(), []);
  const labels = useLoad(() => api.listLabels(), [], active);
  const job = useJob<RunSummary>(async (progress) => {
    onRunsChanged();
    // Cancel = pause at a checkpoint, then give the run up.
    if (cancelling && progress.result?.outcome === "paused") {
      await api.discardRun(progress.result.run_id).catch((e) => setError(toAppError(e)));
      onRunsChanged();
    }
    setCancelling(false);
  }, "train_text");
  const set = <K extends keyof TextTrainingRequest>(key: K, value: TextTrainingRequest[K]) =>
    setEdits((r) => ({ ...r, [key]: value }));
  const number = (key: "steps" | "rank" | "batch_size" | "seq_len", value: string) => {
    const n = Number.parseInt(value, 10);
    if (Number.isFinite(n) && n > 0) set(key, n);
  };

  const start = () => {
    setError(null);
    void job.start((onEvent) => api.startTextTraining(request, onEvent));
  };
  const resume = (run: number) => {
    setError(null);
    void job.start((onEvent) => api.resumeTextTraining(run, onEvent));
  };
  const cancel = () => {
    setCancelling(true);
    void job.cancel();
  };
  usePauseInBackground(
    job,
    (result) => resume(result.run_id),
    (result) => result.outcome === "paused",
  );
  const discard = async (run: number) => {
    try {
      await api.discardRun(run);
      onRunsChanged();
    } catch (e) {
      setError(toAppError(e));
    }
  };

  const progress = job.progress;
  const result = progress?.result;
  const paused = runs.filter((r) => r.kind === "text" && (r.status === "paused" || r.status === "running"));
  const textModels = (models.value ?? []).filter((m) => m.kind === "text");
  const defaultModel = textModels.find((m) => m.default)?.name ?? "";
  const tokensPerSecond = progress?.metrics.tokens_per_second?.at(-1)?.[1];

  return (
    <div class="card" aria-labelledby="text-title">
      <h3 id="text-title">Your writing</h3>
      <p class="muted">Teaches a small language model how you write, from your notes. It stays on this device.</p>
      <form
        class="form-grid"
        onSubmit={(e) => {
          e.preventDefault();
          start();
        }}
      >
        <label>
          Texts
          <select id="train-label" value={request.label ?? ""} onChange={(e) => set("label", e.currentTarget.value)}>
            <option value="">All texts</option>
            {(labels.value ?? []).map((l) => (
              <option value={l.name} key={l.name}>
                Labelled {l.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Base model
          <input
            id="train-model"
            type="text"
            list="text-models"
            placeholder={defaultModel || "model name or file"}
            value={request.model ?? ""}
            onInput={(e) => set("model", e.currentTarget.value)}
          />
          <datalist id="text-models">
            {textModels.map((m) => (
              <option value={m.name} key={m.name}>
                {m.present ? m.description : `${m.description} (not on this device)`}
              </option>
            ))}
          </datalist>
        </label>
        <label>
          Steps
          <input
            id="train-steps"
            type="number"
            min={1}
            value={request.steps}
            onInput={(e) => number("steps", e.currentTarget.value)}
          />
        </label>
        <details class="span">
          <summary>More settings</summary>
          <div class="form-grid">
            <label>
              Rank
              <input type="number" min={1} value={request.rank} onInput={(e) => number("rank", e.currentTarget.value)} />
            </label>
            <label>
              Sequence length
              <input
                id="train-seq-len"
                type="number"
                min={2}
                value={request.seq_len}
                onInput={(e) => number("seq_len", e.currentTarget.value)}
              />
            </label>
            <label>
              Batch size
              <input type="number" min={1} value={request.batch_size} onInput={(e) => number("batch_size", e.currentTarget.value)} />
            </label>
            <label>
              Learning rate
              <input
                id="train-lr"
                type="number"
                step="any"
                min={0}
                value={request.learning_rate}
                onInput={(e) => {
                  const v = Number.parseFloat(e.currentTarget.value);
                  if (v > 0 && v < 1) set("learning_rate", v);
                }}
              />
            </label>
            <label>
              Device
              <select value={request.device} onChange={(e) => set("device", e.currentTarget.value as TextTrainingRequest["device"])}>
                <option value="auto">Best available</option>
                <option value="cpu">CPU</option>
                <option value="cuda">NVIDIA GPU</option>
                <option value="metal">Apple GPU</option>
              </select>
            </label>
          </div>
        </details>
        <div class="row span">
          <button id="train-start" class="primary" type="submit" disabled={job.running}>
            Start
          </button>
          {job.running && (
            <>
              <button id="train-pause" type="button" onClick={() => void job.cancel()} disabled={progress?.status !== "running"}>
                Pause
              </button>
              <button id="train-cancel" type="button" onClick={cancel}>
                Cancel
              </button>
            </>
          )}
        </div>
      </form>
      <ErrorNote error={error ?? progress?.error ?? null} />
      {progress && (
        <div class="training" aria-label="Training progress">
          <ProgressBar progress={progress} label="Training progress" />
          {tokensPerSecond !== undefined && progress.status === "running" && (
            <p class="muted">{Math.round(tokensPerSecond)} tokens/s</p>
          )}
          <LossChart
            loss={progress.metrics.loss ?? []}
            validation={progress.metrics.validation_loss ?? []}
            totalSteps={progress.total}
          />
          {result && (
            <p id="train-result" role="status" data-outcome={result.outcome}>
              {result.outcome === "paused"
                ? cancelling
                  ? `Run ${result.run_id} cancelled at step ${result.steps}.`
                  : `Run ${result.run_id} paused at step ${result.steps} of ${result.total_steps}; resume it below.`
                : `Run ${result.run_id} ${result.outcome === "completed" ? "completed" : "stopped early"}: ${result.steps} steps` +
                  (result.base_validation_loss !== null && result.validation_loss !== null
                    ? `, held-out loss ${result.base_validation_loss.toFixed(3)} → ${result.validation_loss.toFixed(3)}`
                    : "") +
                  (result.adapter_id !== null ? `. Adapter ${result.adapter_id} is ready on the Try screen.` : ".")}
            </p>
          )}
        </div>
      )}
      {paused.length > 0 && !job.running && (
        <div class="resumable">
          <h4>Unfinished runs</h4>
          <ul>
            {paused.map((run) => (
              <li key={run.id} class="row">
                <span class="grow">
                  Run {run.id}: step {run.steps_done} of {run.total_steps ?? "?"} ({run.status}), {fileName(run.base_model)}
                </span>
                <button onClick={() => resume(run.id)} aria-label={`Resume run ${run.id}`}>
                  Resume
                </button>
                <button onClick={() => void discard(run.id)} aria-label={`Cancel run ${run.id}`}>
                  Cancel
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
    </div>
  );
}

function PhotoTraining({ runs, onRunsChanged }: { runs: RunView[]; onRunsChanged: () => void }) {
  const [fineTune, setFineTune] = useState(false);
  const [blocks, setBlocks] = useState(2);
  const embed = useJob<EmbedSummary>(undefined, "embed");
  const train = useJob<TaggerSummary>(() => onRunsChanged(), "train_photos");
  const busy = embed.running || train.running;
  const tagger = train.progress?.result;
  // Fine-tuning stopped by Cancel or by closing the window, or killed.
  const unfinished = runs.filter((r) => r.kind === "photos" && (r.status === "paused" || r.status === "running"));
  return (
    <div class="card" aria-labelledby="photos-title">
      <h3 id="photos-title">Your photos</h3>
      <p class="muted">Learns your photo labels (at least two photos per label) so it can suggest them for new photos.</p>
      <div class="row">
        <button id="embed-photos" onClick={() => void embed.start((onEvent) => api.embedPhotos(onEvent))} disabled={busy}>
          Prepare photos
        </button>
        <button
          id="train-tagger"
          class="primary"
          disabled={busy}
          onClick={() =>
            void train.start((onEvent) =>
              api.trainPhotoTagger({ fine_tune_blocks: fineTune ? blocks : null }, onEvent),
            )
          }
        >
          Learn my labels
        </button>
        {busy && <button onClick={() => void (embed.running ? embed.cancel() : train.cancel())}>Cancel</button>}
      </div>
      <div class="row">
        <label class="inline">
          <input type="checkbox" checked={fineTune} onChange={(e) => setFineTune(e.currentTarget.checked)} />
          Also fine-tune the network's last blocks (slower, often more accurate)
        </label>
        {fineTune && (
          <label class="inline">
            Blocks
            <input
              type="number"
              min={1}
              max={16}
              value={blocks}
              onInput={(e) => setBlocks(Math.max(1, Number.parseInt(e.currentTarget.value, 10) || 1))}
            />
          </label>
        )}
      </div>
      {unfinished.length > 0 && !busy && (
        <div class="resumable">
          <h4>Unfinished photo runs</h4>
          <ul>
            {unfinished.map((run) => (
              <li key={run.id} class="row">
                <span class="grow">
                  Run {run.id}: fine-tuning step {run.steps_done} ({run.status})
                </span>
                <button
                  onClick={() => void train.start((onEvent) => api.resumePhotoTagger(run.id, onEvent))}
                  aria-label={`Resume photo run ${run.id}`}
                >
                  Resume
                </button>
              </li>
            ))}
          </ul>
        </div>
      )}
      {embed.progress && <ProgressBar progress={embed.progress} label="Photo preparation progress" />}
      <ErrorNote error={embed.progress?.error ?? null} />
      {embed.progress?.result && (
        <p role="status">
          {embed.progress.result.embedded} photos prepared, {embed.progress.result.cached} already were,{" "}
          {embed.progress.result.failed} no longer open.
        </p>
      )}
      {train.progress && <ProgressBar progress={train.progress} label="Photo label training progress" />}
      <ErrorNote error={train.progress?.error ?? null} />
      {tagger && (
        <div class="table-scroll">
          <table class="table" id="tagger-result">
            <caption>Learned from {tagger.examples} photos</caption>
            <thead>
              <tr>
                <th scope="col">Label</th>
                <th scope="col">Held-out accuracy</th>
              </tr>
            </thead>
            <tbody>
              {tagger.labels.map((label, i) => {
                const accuracy = tagger.held_out_accuracy[i];
                return (
                  <tr key={label}>
                    <td>{label}</td>
                    <td>
                      {accuracy === null || accuracy === undefined
                        ? "too few photos to tell"
                        : `${Math.round(accuracy * 100)}%${accuracy <= 0.5 ? " (no better than chance: not suggested yet)" : ""}`}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
      {tagger && guessing(tagger) && (
        <p class="muted" id="tagger-guessing" role="note">
          Tested on photos it had not seen, it did no better than guessing: these photos are too unlike each other
          to learn from yet. Label a few more photos of each label, then learn again.
        </p>
      )}
    </div>
  );
}

/** Every label measured on held-out photos, and none better than a coin. */
function guessing(tagger: TaggerSummary): boolean {
  const measured = tagger.held_out_accuracy.filter((a): a is number => a !== null && a !== undefined);
  return measured.length === tagger.labels.length && measured.every((a) => a <= 0.5);
}

function RunHistory({ runs, error }: { runs: RunView[]; error: AppError | null }) {
  return (
    <div class="card" aria-labelledby="history-title">
      <h3 id="history-title">Run history</h3>
      <ErrorNote error={error} />
      {runs.length === 0 ? (
        <p class="muted">No runs yet.</p>
      ) : (
        <div class="table-scroll">
          <table class="table" id="run-history">
            <thead>
              <tr>
                <th scope="col">Run</th>
                <th scope="col">Kind</th>
                <th scope="col">Status</th>
                <th scope="col">Steps</th>
                <th scope="col">Held-out loss</th>
                <th scope="col">Data</th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {runs.map((run) => (
                <tr key={run.id}>
                  <td>{run.id}</td>
                  <td>{run.kind}</td>
                  <td title={run.error ?? undefined}>{run.status.replace("_", " ")}</td>
                  <td>
                    {run.steps_done}
                    {run.total_steps !== null ? ` / ${run.total_steps}` : ""}
                  </td>
                  <td>
                    {run.base_validation_loss !== null && run.validation_loss !== null
                      ? `${run.base_validation_loss.toFixed(3)} → ${run.validation_loss.toFixed(3)}`
                      : "—"}
                  </td>
                  <td>
                    {run.item_count} {run.kind === "text" ? "texts" : "photos"}
                    {run.label ? ` labelled ${run.label}` : ""}
                  </td>
                  <td>{run.started_at.replace("T", " ").slice(0, 16)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
