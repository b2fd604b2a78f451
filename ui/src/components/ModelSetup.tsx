// Which default models this device lacks, and installing one from a copy
// the person has (a file, or a folder for a model of several files): the
// way a first model reaches a phone, or a computer without the hub. The
// copy is checked against the registry's sha256 in Rust; a wrong file is
// refused and nothing is kept.
import { useState } from "preact/hooks";
import { open } from "@tauri-apps/plugin-dialog";
import { api, toAppError } from "../api/ipc";
import type { AppError, Installed, ModelChoice } from "../api/types";
import { formatBytes } from "../lib/progress";
import { useJob, useLoad } from "../lib/useJob";
import { ErrorNote } from "./ErrorNote";
import { ProgressBar } from "./ProgressBar";

const PURPOSE: Record<string, string> = {
  text: "learning your writing",
  vision: "tagging photos",
  embedding: "searching by meaning",
};

export function ModelSetup({ onInstalled }: { onInstalled?: () => void }) {
  const models = useLoad(() => api.listModels(), []);
  const [error, setError] = useState<AppError | null>(null);
  const job = useJob<Installed>(() => {
    void models.reload();
    onInstalled?.();
  }, "install_model");
  const missing = (models.value ?? []).filter((m) => m.default && !m.present);
  const result = job.progress?.result;
  if (missing.length === 0 && !job.progress) return null;

  const choose = async (model: ModelChoice) => {
    setError(null);
    try {
      const picked = await open({
        directory: model.folder,
        multiple: false,
        title: model.folder ? `The folder with ${model.name}'s files` : `The ${model.name} model file`,
      });
      if (typeof picked !== "string") return;
      void job.start((onEvent) => api.installModel(model.name, picked, onEvent));
    } catch (e) {
      setError(toAppError(e));
    }
  };

  return (
    <div class="card" aria-labelledby="models-title">
      <h3 id="models-title">Models</h3>
      {missing.length > 0 && (
        <p class="muted">
          Some models are not on this device yet. If you have a copy (downloaded on another computer, or from
          another device), choose it: it is checked against the expected fingerprint before it is kept.
        </p>
      )}
      <ul class="models">
        {missing.map((m) => (
          <li key={m.name}>
            <span>
              <strong>{m.name}</strong>, for {PURPOSE[m.kind] ?? m.kind}: {m.description}
            </span>
            {m.installable ? (
              <button type="button" disabled={job.running} onClick={() => void choose(m)}>
                {m.folder ? "Choose its folder…" : "Choose the file…"}
              </button>
            ) : (
              <span class="muted">not installable from a copy</span>
            )}
          </li>
        ))}
      </ul>
      {job.running && (
        <button type="button" onClick={() => void job.cancel()} aria-label="Cancel the installation">
          Cancel
        </button>
      )}
      {job.progress && job.progress.status === "running" && (
        <ProgressBar progress={job.progress} label="Installation progress" />
      )}
      {result && (
        <p role="status">
          Installed {result.name} ({formatBytes(result.bytes)}, fingerprint checked).
        </p>
      )}
      <ErrorNote error={error ?? job.progress?.error ?? null} />
    </div>
  );
}
