// The Audit screen: where an adapter came from (items -> run -> adapter,
// with the lineage hash in its file recomputed from the run's record, as
// `hearth lineage ADAPTER` shows it), where a photo tagger came from
// (photos -> run -> tagger, its head file hashed again, as `hearth photos
// lineage` shows it) and whether the transparency log of
// every federation this device joined still verifies from what it stored
// (as `hearth audit` checks).
import { useEffect, useRef, useState } from "preact/hooks";
import { api, toAppError } from "../api/ipc";
import type { AdapterLineage, AppError, AuditOutcome, LineageItem, TaggerLineage } from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { fileName, plural } from "../lib/progress";
import { useLoad } from "../lib/useJob";

/** Items listed before "and N more" (a run may have thousands). */
const ITEMS_SHOWN = 50;

export function Audit({ active }: { active: boolean }) {
  return (
    <section class="screen audit" aria-labelledby="audit-title">
      <h2 id="audit-title">Audit</h2>
      <Lineage active={active} />
      <TaggerLineageCard active={active} />
      <Logs active={active} />
    </section>
  );
}

/**
 * A list reloaded whenever the screen is shown, the entry chosen from it
 * (the newest, first in the list, until the person picks another) and that
 * entry's lineage, fetched whenever the choice changes.
 */
function useLineage<T extends { id: number }, L>(
  active: boolean,
  list: () => Promise<T[]>,
  fetch: (id: number) => Promise<L>,
) {
  const entries = useLoad(list, [], active);
  // The latest `fetch`: the lineage is fetched again when the choice
  // changes, not when the caller passes a new closure.
  const latestFetch = useRef(fetch);
  latestFetch.current = fetch;
  const [chosen, setChosen] = useState<number | null>(null);
  const [lineage, setLineage] = useState<L | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const all = entries.value ?? [];
  const id = chosen ?? all[0]?.id ?? null;

  useEffect(() => {
    if (id === null) {
      setLineage(null);
      return;
    }
    let current = true;
    setError(null);
    latestFetch.current(id).then(
      (l) => current && setLineage(l),
      (e) => {
        if (!current) return;
        setLineage(null);
        setError(toAppError(e));
      },
    );
    return () => {
      current = false;
    };
  }, [id]);
  return { all, id, setChosen, lineage, error: entries.error ?? error };
}

function Lineage({ active }: { active: boolean }) {
  const { all: list, id: adapter, setChosen, lineage, error } = useLineage(active, api.listAdapters, api.adapterLineage);

  return (
    <div class="card" aria-labelledby="lineage-title">
      <h3 id="lineage-title">Where an adapter came from</h3>
      <ErrorNote error={error} />
      {list.length === 0 ? (
        <p class="muted">No adapters yet: train one on the Personalize screen.</p>
      ) : (
        <label>
          Adapter
          <select id="audit-adapter" value={adapter ?? ""} onChange={(e) => setChosen(Number(e.currentTarget.value))}>
            {list.map((a) => (
              <option key={a.id} value={a.id}>
                {a.id}: {a.name} ({a.source}, {a.created_at.replace("T", " ").slice(0, 16)})
              </option>
            ))}
          </select>
        </label>
      )}
      {lineage && lineage.adapter.id === adapter && <LineageView lineage={lineage} />}
    </div>
  );
}

function LineageCheck({ lineage }: { lineage: AdapterLineage }) {
  const { file_lineage: hash, lineage_matches: matches } = lineage;
  const { status, text } =
    hash === null
      ? { status: "none", text: "The adapter's file records no lineage hash." }
      : matches === true
        ? { status: "match", text: "The lineage hash in the adapter's file matches the run's record (base model, settings and items)." }
        : matches === false
          ? { status: "mismatch", text: "The lineage hash in the adapter's file does NOT match the run's record." }
          : { status: "unknown", text: "The adapter's file has a lineage hash, but its run is not in this library to check it against." };
  return (
    <p id="audit-lineage-check" class={`check ${status}`} data-status={status} role="status">
      <span aria-hidden="true">{status === "match" ? "✓ " : status === "mismatch" ? "✗ " : ""}</span>
      {text}
      {hash && (
        <>
          {" "}
          <code title="lineage hash">{hash.slice(0, 16)}…</code>
        </>
      )}
    </p>
  );
}

function LineageView({ lineage }: { lineage: AdapterLineage }) {
  const { adapter, run, items, items_root: root } = lineage;
  return (
    <div class="lineage" id="audit-lineage">
      <ol class="chain" aria-label="From items to adapter">
        <li>
          <h4>Items</h4>
          {root ? (
            <p>
              {plural(root.count, "item")}, committed to by Merkle root <code title={root.root}>{root.root.slice(0, 16)}…</code>
            </p>
          ) : (
            <p class="muted">Unknown: no training run for this adapter in this library.</p>
          )}
        </li>
        <li>
          <h4>Run</h4>
          {run ? (
            <p id="audit-run">
              Run {run.id} ({run.kind}, {run.status.replace("_", " ")}), {run.steps_done} steps on{" "}
              {fileName(run.base_model)} <code title={run.base_model_sha256}>{run.base_model_sha256.slice(0, 16)}…</code>,
              started {run.started_at.replace("T", " ").slice(0, 16)}
              {run.parent_sha256 && (
                <>
                  , from the global adapter <code title={run.parent_sha256}>{run.parent_sha256.slice(0, 16)}…</code>
                </>
              )}
            </p>
          ) : (
            <p class="muted">Imported from elsewhere: its training run is not in this library.</p>
          )}
        </li>
        <li>
          <h4>Adapter</h4>
          <p>
            {adapter.id}: {adapter.name} ({adapter.source}), rank {adapter.rank},{" "}
            <code title={adapter.sha256}>{adapter.sha256.slice(0, 16)}…</code>
          </p>
        </li>
      </ol>
      <LineageCheck lineage={lineage} />
      <LearnedFrom items={items} />
    </div>
  );
}

/** The items a run learned from: the first [`ITEMS_SHOWN`], then all on request. */
function LearnedFrom({ items }: { items: LineageItem[] }) {
  const [all, setAll] = useState(false);
  const shown = all ? items : items.slice(0, ITEMS_SHOWN);
  if (items.length === 0) return null;
  return (
    <details>
      <summary>The {plural(items.length, "item")} it learned from</summary>
      <ul class="items" aria-label="Items it learned from">
        {shown.map((item) => (
          <li key={item.sha256}>
            <code title={item.sha256}>{item.sha256.slice(0, 12)}</code>{" "}
            {item.item ? <span title={item.item[1]}>{fileName(item.item[1])}</span> : <span class="muted">no longer in the library</span>}
          </li>
        ))}
      </ul>
      {!all && items.length > ITEMS_SHOWN && <button onClick={() => setAll(true)}>Show all {items.length}</button>}
    </details>
  );
}

function TaggerLineageCard({ active }: { active: boolean }) {
  const { all: list, id: tagger, setChosen, lineage, error } = useLineage(active, api.listPhotoTaggers, api.photoTaggerLineage);

  return (
    <div class="card" aria-labelledby="tagger-lineage-title">
      <h3 id="tagger-lineage-title">Where a photo tagger came from</h3>
      <ErrorNote error={error} />
      {list.length === 0 ? (
        <p class="muted">No photo taggers yet: label a few photos and learn them on the Personalize screen.</p>
      ) : (
        <label>
          Tagger
          <select id="audit-tagger" value={tagger ?? ""} onChange={(e) => setChosen(Number(e.currentTarget.value))}>
            {list.map((t) => (
              <option key={t.id} value={t.id}>
                {t.id}: {t.labels.join(", ")} ({t.created_at.replace("T", " ").slice(0, 16)})
              </option>
            ))}
          </select>
        </label>
      )}
      {lineage && lineage.tagger.id === tagger && <TaggerLineageView lineage={lineage} />}
    </div>
  );
}

function TaggerLineageView({ lineage }: { lineage: TaggerLineage }) {
  const { tagger, run, items, items_root: root } = lineage;
  const status = lineage.file_matches ? "match" : "mismatch";
  return (
    <div class="lineage" id="audit-tagger-lineage">
      <ol class="chain" aria-label="From photos to tagger">
        <li>
          <h4>Photos</h4>
          <p>
            {plural(root.count, "photo")}, committed to by Merkle root <code title={root.root}>{root.root.slice(0, 16)}…</code>
          </p>
        </li>
        <li>
          <h4>Run</h4>
          <p>
            Run {run.id} ({run.status.replace("_", " ")}) on {run.base_model}{" "}
            <code title={run.base_model_sha256}>{run.base_model_sha256.slice(0, 16)}…</code>, started{" "}
            {run.started_at.replace("T", " ").slice(0, 16)}
          </p>
        </li>
        <li>
          <h4>Tagger</h4>
          <p>
            {tagger.id}: {tagger.labels.join(", ")}, head <code title={tagger.sha256}>{tagger.sha256.slice(0, 16)}…</code>
            {tagger.model_sha256 !== run.base_model_sha256 && " (over the network its run fine-tuned)"}
          </p>
        </li>
      </ol>
      <p id="audit-tagger-check" class={`check ${status}`} data-status={status} role="status">
        <span aria-hidden="true">{lineage.file_matches ? "✓ " : "✗ "}</span>
        {lineage.file_matches
          ? "The tagger's head file is the one its run wrote."
          : lineage.file_sha256 === null
            ? "The tagger's head file is missing."
            : "The tagger's head file has changed since its run wrote it."}
      </p>
      <LearnedFrom items={items} />
    </div>
  );
}

function Logs({ active }: { active: boolean }) {
  const [outcomes, setOutcomes] = useState<AuditOutcome[] | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const [checking, setChecking] = useState(false);
  const verify = async () => {
    setChecking(true);
    setError(null);
    try {
      setOutcomes(await api.auditFederations());
    } catch (e) {
      setError(toAppError(e));
    } finally {
      setChecking(false);
    }
  };
  useEffect(() => {
    if (active) void verify();
  }, [active]);

  return (
    <div class="card" aria-labelledby="logs-title">
      <div class="row spread">
        <h3 id="logs-title">Federation transparency logs</h3>
        <button id="audit-verify" onClick={() => void verify()} disabled={checking}>
          {checking ? "Checking…" : "Check again"}
        </button>
      </div>
      <p class="muted">
        After every round this device checks the server's public, append-only log: that it holds this device's
        upload and the published adapter, and that it never rewrote its history. Here every stored check is
        verified again.
      </p>
      <ErrorNote error={error} />
      {outcomes !== null && outcomes.length === 0 && (
        <p id="audit-logs-none">This device never joined a federation: nothing was shared, nothing to check.</p>
      )}
      {outcomes !== null && outcomes.length > 0 && (
        <ul class="audits" id="audit-logs">
          {outcomes.map((o) => (
            <li key={o.membership} data-verified={String(o.verified)} class={`check ${o.verified ? "match" : "mismatch"}`}>
              <strong>
                “{o.federation_id}” at <code>{o.server_url}</code>
                {o.active ? "" : " (left)"}:
              </strong>{" "}
              {o.verified
                ? `✓ verified: ${plural(o.checkpoints, "signed log head")}, ${plural(o.rounds, "round")} (${plural(o.commitments, "upload")} of this device, ${plural(o.adapters, "published adapter")})` +
                  (o.log_size !== null ? `; the log had ${o.log_size} entries at the last check.` : "; no round checked yet.") +
                  (o.uploads_backed !== null
                    ? ` ${o.uploads_backed[1]} of ${plural(o.uploads_backed[0], "upload")} in the log are backed by their device's signed word.`
                    : "")
                : `✗ FAILED: ${o.error ?? "unknown"}`}
              {o.contradicted_uploads.length > 0 && (
                <ul class="contradicted">
                  {o.contradicted_uploads.map((c) => (
                    <li key={c}>the log dropped or swapped the upload of {c}</li>
                  ))}
                </ul>
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
