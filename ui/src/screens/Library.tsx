// The Library screen: import folders (native dialog, or a typed path),
// the photo grid and the text list, labels, search and label filter.
import { useState } from "preact/hooks";
import { open } from "@tauri-apps/plugin-dialog";
import { api, thumbnailUrl, toAppError } from "../api/ipc";
import type { AppError, ImportSummary, ItemKind } from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { ItemDetails } from "../components/ItemDetails";
import { ProgressBar } from "../components/ProgressBar";
import { fileName, formatBytes, plural } from "../lib/progress";
import { useJob, useLoad } from "../lib/useJob";

export function Library({ active }: { active: boolean }) {
  const [kind, setKind] = useState<"" | ItemKind>("");
  const [label, setLabel] = useState("");
  const [search, setSearch] = useState("");
  const [selected, setSelected] = useState<number | null>(null);
  const info = useLoad(() => api.libraryInfo(), [], active);
  const labels = useLoad(() => api.listLabels(), [], active);
  const items = useLoad(
    () => api.listItems({ kind: kind || undefined, label: label || undefined, search: search || undefined }),
    [kind, label, search],
    active,
  );
  const refresh = () => {
    void info.reload();
    void labels.reload();
    void items.reload();
  };

  const all = items.value ?? [];
  const photos = all.filter((i) => i.kind === "photo");
  const texts = all.filter((i) => i.kind === "text");
  const current = all.find((i) => i.id === selected) ?? null;

  return (
    <section class="screen library" aria-labelledby="library-title">
      <h2 id="library-title">Library</h2>
      {info.value && (
        <p class="muted" id="library-stats">
          {plural(info.value.stats.photos, "photo")} ({formatBytes(info.value.stats.photo_bytes)}),{" "}
          {plural(info.value.stats.texts, "text")}, {plural(info.value.stats.labels, "label")} — kept in{" "}
          <code>{info.value.path}</code>
        </p>
      )}
      <ErrorNote error={info.error ?? items.error} />
      <Importer onImported={refresh} />

      <div class="filters" role="search">
        <label>
          Show
          <select value={kind} onChange={(e) => setKind(e.currentTarget.value as "" | ItemKind)}>
            <option value="">Everything</option>
            <option value="photo">Photos</option>
            <option value="text">Texts</option>
          </select>
        </label>
        <label>
          Label
          <select id="label-filter" value={label} onChange={(e) => setLabel(e.currentTarget.value)}>
            <option value="">Any label</option>
            {(labels.value ?? []).map((l) => (
              <option value={l.name} key={l.name}>
                {l.name} ({l.items})
              </option>
            ))}
          </select>
        </label>
        <label class="grow">
          Search
          <input
            type="search"
            id="search"
            placeholder="File name or label"
            value={search}
            onInput={(e) => setSearch(e.currentTarget.value)}
          />
        </label>
      </div>

      <div class="library-body">
        <div class="library-lists">
          {photos.length > 0 && (
            <>
              <h3>Photos</h3>
              <ul class="photo-grid" aria-label="Photos">
                {photos.map((item) => (
                  <li key={item.id}>
                    <button
                      class="photo"
                      aria-pressed={item.id === selected}
                      aria-label={`${fileName(item.path)}${item.labels.length ? `, labels: ${item.labels.join(", ")}` : ""}`}
                      onClick={() => setSelected(item.id === selected ? null : item.id)}
                    >
                      <img src={thumbnailUrl(item) ?? ""} alt="" loading="lazy" data-item={item.id} />
                      {item.labels.length > 0 && <span class="badge">{item.labels.join(", ")}</span>}
                    </button>
                  </li>
                ))}
              </ul>
            </>
          )}
          {texts.length > 0 && (
            <>
              <h3>Texts</h3>
              <ul class="text-list" aria-label="Texts">
                {texts.map((item) => (
                  <li key={item.id}>
                    <button
                      class="text-row"
                      aria-pressed={item.id === selected}
                      onClick={() => setSelected(item.id === selected ? null : item.id)}
                    >
                      <span class="name">{fileName(item.path)}</span>
                      <span class="muted">{item.text_chars ?? 0} characters</span>
                      {item.labels.length > 0 && <span class="badge">{item.labels.join(", ")}</span>}
                    </button>
                  </li>
                ))}
              </ul>
            </>
          )}
          {items.value && all.length === 0 && (
            <p class="muted">Nothing here yet{search || label || kind ? " that matches" : ": import a folder of photos and notes"}.</p>
          )}
        </div>
        {current && <ItemDetails item={current} onChanged={refresh} onClose={() => setSelected(null)} />}
      </div>
    </section>
  );
}

function Importer({ onImported }: { onImported: () => void }) {
  const [path, setPath] = useState("");
  const [error, setError] = useState<AppError | null>(null);
  const job = useJob<ImportSummary>(() => onImported(), "import");

  const run = (paths: string[]) => {
    setError(null);
    void job.start((onEvent) => api.importFolders(paths, onEvent));
  };
  // Phones have no folder picker: photos and notes are picked as files.
  const platform = useLoad(() => api.appPlatform(), []);
  const mobile = platform.value?.mobile ?? false;
  const choose = async () => {
    try {
      const picked = await open(
        mobile
          ? { directory: false, multiple: true, title: "Choose photos and notes to import" }
          : { directory: true, multiple: true, title: "Choose folders to import" },
      );
      if (picked === null) return;
      run(Array.isArray(picked) ? picked : [picked]);
    } catch (e) {
      setError(toAppError(e));
    }
  };
  const result = job.progress?.result;
  return (
    <div class="card importer">
      <h3>Import</h3>
      <div class="row">
        <button class="primary" onClick={() => void choose()} disabled={job.running}>
          {mobile ? "Choose photos and notes…" : "Choose folder…"}
        </button>
        <form
          class="row grow"
          onSubmit={(e) => {
            e.preventDefault();
            if (path.trim()) run([path.trim()]);
          }}
        >
          <label class="grow">
            <span class="visually-hidden">Folder path</span>
            <input
              id="import-path"
              type="text"
              placeholder="or type a folder path, e.g. /home/me/Pictures"
              value={path}
              onInput={(e) => setPath(e.currentTarget.value)}
            />
          </label>
          <button id="import-button" type="submit" disabled={job.running || !path.trim()}>
            Import
          </button>
        </form>
        {job.running && (
          <button onClick={() => void job.cancel()} aria-label="Cancel the import">
            Cancel
          </button>
        )}
      </div>
      <ErrorNote error={error ?? job.progress?.error ?? null} />
      {job.progress && job.progress.status === "running" && <ProgressBar progress={job.progress} label="Import progress" />}
      {result && (
        <p id="import-result" role="status">
          {result.cancelled ? "Import cancelled: " : "Imported: "}
          {result.imported} new, {result.already_present} already here, {result.skipped} skipped, {result.failed} failed.
        </p>
      )}
      {result && result.problems.length > 0 && (
        <details>
          <summary>Files not imported ({result.problems.length})</summary>
          <ul class="problems">
            {result.problems.map((p) => (
              <li key={p.path}>
                <code>{fileName(p.path)}</code>: {p.reason ?? p.outcome}
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}
