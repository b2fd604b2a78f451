// The Try screen: a prompt answered by the base model and the
// personalized one side by side (streamed as they write), suggested photo
// tags to accept or reject, and photos like a chosen one.
import { useState } from "preact/hooks";
import { api, thumbnailUrl, toAppError } from "../api/ipc";
import type { AppError, GenerateEvent, Item, Pass, PhotoTags, SimilarPhoto } from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { fileName } from "../lib/progress";
import { useLoad } from "../lib/useJob";

export function Try({ active }: { active: boolean }) {
  return (
    <section class="screen try" aria-labelledby="try-title">
      <h2 id="try-title">Try</h2>
      <Generate active={active} />
      <PhotoSuggestions active={active} />
    </section>
  );
}

interface Side {
  text: string;
  state: "idle" | "waiting" | "writing" | "done";
  speed: number | null;
}

const EMPTY: Record<Pass, Side> = {
  base: { text: "", state: "idle", speed: null },
  personalized: { text: "", state: "idle", speed: null },
};

/** Folds one generation event into the two sides. */
export function applyGenerateEvent(sides: Record<Pass, Side>, event: GenerateEvent): Record<Pass, Side> {
  switch (event.event) {
    case "begin":
      return { ...sides, [event.pass]: { text: "", state: "writing", speed: null } };
    case "text":
      return { ...sides, [event.pass]: { ...sides[event.pass], text: sides[event.pass].text + event.text } };
    case "end":
      return { ...sides, [event.pass]: { ...sides[event.pass], state: "done", speed: event.tokens_per_second } };
    default:
      return sides;
  }
}

function Generate({ active }: { active: boolean }) {
  const adapters = useLoad(() => api.listAdapters(), [], active);
  const [prompt, setPrompt] = useState("");
  const [adapter, setAdapter] = useState<number | null>(null);
  // Length and temperature start as the library's defaults
  // (`request_defaults`); `null` until the person changes them.
  const defaults = useLoad(() => api.requestDefaults(), []);
  const [maxTokensEdit, setMaxTokens] = useState<number | null>(null);
  const [temperatureEdit, setTemperature] = useState<number | null>(null);
  const maxTokens = maxTokensEdit ?? defaults.value?.generate.max_tokens;
  const temperature = temperatureEdit ?? defaults.value?.generate.temperature;
  const [chat, setChat] = useState(true);
  const [sides, setSides] = useState<Record<Pass, Side>>(EMPTY);
  const [status, setStatus] = useState<string | null>(null);
  const [running, setRunning] = useState<number | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const list = adapters.value ?? [];
  // The newest adapter (the list is newest first), unless one was chosen.
  const chosen = adapter ?? list[0]?.id ?? null;

  const generate = async () => {
    setError(null);
    setSides({
      base: { ...EMPTY.base, state: "waiting" },
      personalized: { ...EMPTY.personalized, state: chosen !== null ? "waiting" : "idle" },
    });
    let current = { ...EMPTY };
    const onEvent = (event: GenerateEvent) => {
      current = applyGenerateEvent(current, event);
      setSides(current);
      if (event.event === "loading") setStatus(`Loading ${fileName(event.model)}…`);
      if (event.event === "begin") setStatus(null);
      if (event.event === "failed") setError(event.error);
      if (event.event === "done" || event.event === "failed") {
        setRunning(null);
        setStatus(event.event === "done" ? "Done." : null);
      }
    };
    try {
      setRunning(
        await api.generateText(
          {
            prompt,
            adapter_id: chosen,
            compare: true,
            ...(maxTokens !== undefined && { max_tokens: maxTokens }),
            ...(temperature !== undefined && { temperature }),
            raw: !chat,
          },
          onEvent,
        ),
      );
    } catch (e) {
      setError(toAppError(e));
    }
  };

  return (
    <div class="card" aria-labelledby="generate-title">
      <h3 id="generate-title">Before and after</h3>
      <form
        class="form-grid"
        onSubmit={(e) => {
          e.preventDefault();
          if (prompt.trim()) void generate();
        }}
      >
        <label class="span">
          Prompt
          <textarea
            id="prompt"
            rows={3}
            value={prompt}
            placeholder="Write the start of a note, or ask something"
            onInput={(e) => setPrompt(e.currentTarget.value)}
            onKeyDown={(e) => {
              if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && prompt.trim()) void generate();
            }}
          />
        </label>
        <label>
          Personalized with
          <select
            id="adapter"
            value={chosen ?? ""}
            onChange={(e) => setAdapter(e.currentTarget.value ? Number(e.currentTarget.value) : null)}
          >
            {list.length === 0 && <option value="">No adapter yet (base model only)</option>}
            {list.map((a) => (
              <option value={a.id} key={a.id}>
                Adapter {a.id}: {a.name} ({fileName(a.base_model ?? "?")})
              </option>
            ))}
          </select>
        </label>
        <label>
          Length (tokens)
          <input
            id="max-tokens"
            type="number"
            min={1}
            max={2048}
            value={maxTokens}
            onInput={(e) => setMaxTokens(Math.max(1, Number.parseInt(e.currentTarget.value, 10) || 1))}
          />
        </label>
        <label>
          Temperature
          <input
            type="number"
            min={0}
            max={2}
            step={0.1}
            value={temperature}
            onInput={(e) => setTemperature(Math.max(0, Number.parseFloat(e.currentTarget.value) || 0))}
          />
        </label>
        <label class="inline">
          <input type="checkbox" checked={chat} onChange={(e) => setChat(e.currentTarget.checked)} />
          Use the model's chat format (when it has one)
        </label>
        <div class="row span">
          <button id="generate" class="primary" type="submit" disabled={running !== null || !prompt.trim()}>
            Generate
          </button>
          {running !== null && (
            <button
              type="button"
              onClick={() =>
                void api.cancelJob(running).catch((e: unknown) => {
                  // A generation that just ended has nothing to stop.
                  const failure = toAppError(e);
                  if (failure.kind !== "not_found") setError(failure);
                })
              }
            >
              Stop
            </button>
          )}
          {status && <span class="muted" role="status">{status}</span>}
        </div>
      </form>
      <ErrorNote error={error ?? adapters.error} />
      <div class="side-by-side">
        {(["base", "personalized"] as const).map((pass) => (
          <article class="completion" key={pass} aria-labelledby={`${pass}-title`}>
            <h4 id={`${pass}-title`}>{pass === "base" ? "Base model" : "Personalized"}</h4>
            <p
              id={`completion-${pass}`}
              class="completion-text"
              aria-live="polite"
              aria-busy={sides[pass].state === "writing" || sides[pass].state === "waiting"}
              data-state={sides[pass].state}
            >
              {sides[pass].text || (sides[pass].state === "idle" ? "—" : "…")}
            </p>
            {sides[pass].speed !== null && <p class="muted">{sides[pass].speed?.toFixed(0)} tokens/s</p>}
          </article>
        ))}
      </div>
    </div>
  );
}

function PhotoSuggestions({ active }: { active: boolean }) {
  const [tags, setTags] = useState<PhotoTags[] | null>(null);
  const [similar, setSimilar] = useState<{ of: Item; photos: SimilarPhoto[] } | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const [loading, setLoading] = useState(false);
  const photos = useLoad(() => api.listItems({ kind: "photo" }), [], active);

  const suggest = async () => {
    setLoading(true);
    try {
      setTags(await api.suggestTags(false));
      setError(null);
    } catch (e) {
      setError(toAppError(e));
    } finally {
      setLoading(false);
    }
  };
  const verdict = async (item: Item, label: string, accept: boolean) => {
    try {
      const updated = accept ? await api.acceptTag(item.id, label) : await api.rejectTag(item.id, label);
      setTags((rows) =>
        (rows ?? []).map((row) =>
          row.item.id === item.id
            ? { item: updated, suggestions: row.suggestions.filter((s) => s.label !== label) }
            : row,
        ),
      );
    } catch (e) {
      setError(toAppError(e));
    }
  };
  const findSimilar = async (item: Item) => {
    try {
      setSimilar({ of: item, photos: await api.similarPhotos(item.id, 8) });
      setError(null);
    } catch (e) {
      setError(toAppError(e));
    }
  };

  return (
    <div class="card" aria-labelledby="tags-title">
      <h3 id="tags-title">Photo suggestions</h3>
      <div class="row">
        <button id="suggest-tags" onClick={() => void suggest()} disabled={loading}>
          {loading ? "Looking…" : "Suggest labels for unlabelled photos"}
        </button>
        <label class="inline">
          Photos like
          <select
            id="similar-of"
            value={similar?.of.id ?? ""}
            onChange={(e) => {
              const item = (photos.value ?? []).find((p) => p.id === Number(e.currentTarget.value));
              if (item) void findSimilar(item);
            }}
          >
            <option value="">choose a photo…</option>
            {(photos.value ?? []).map((p) => (
              <option value={p.id} key={p.id}>
                {fileName(p.path)}
              </option>
            ))}
          </select>
        </label>
      </div>
      <ErrorNote error={error} />
      {tags && tags.length === 0 && <p class="muted">Every photo has a label already.</p>}
      {tags && tags.length > 0 && (
        <ul class="suggestions" aria-label="Suggested labels">
          {tags.map((row) => (
            <li class="suggestion" key={row.item.id}>
              <img src={thumbnailUrl(row.item) ?? ""} alt={fileName(row.item.path)} loading="lazy" />
              <div class="grow">
                <p>
                  <strong>{fileName(row.item.path)}</strong>
                  {row.item.labels.length > 0 && <span class="muted"> — now: {row.item.labels.join(", ")}</span>}
                </p>
                <ul class="chips">
                  {row.suggestions.map((s) => (
                    <li class={s.suggested ? "chip suggested" : "chip"} key={s.label}>
                      {s.label} {Math.round(s.confidence * 100)}%
                      <button
                        aria-label={`Accept ${s.label} for ${fileName(row.item.path)}`}
                        onClick={() => void verdict(row.item, s.label, true)}
                      >
                        ✓
                      </button>
                      <button
                        aria-label={`Reject ${s.label} for ${fileName(row.item.path)}`}
                        onClick={() => void verdict(row.item, s.label, false)}
                      >
                        ✗
                      </button>
                    </li>
                  ))}
                </ul>
              </div>
            </li>
          ))}
        </ul>
      )}
      {similar && (
        <>
          <h4>Photos like {fileName(similar.of.path)}</h4>
          <ul class="photo-grid" aria-label={`Photos like ${fileName(similar.of.path)}`}>
            {similar.photos.map((p) => (
              <li key={p.item.id}>
                <figure class="photo">
                  <img src={thumbnailUrl(p.item) ?? ""} alt={fileName(p.item.path)} loading="lazy" />
                  <figcaption>{Math.round(p.similarity * 100)}% alike</figcaption>
                </figure>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}
