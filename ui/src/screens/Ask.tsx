// The Ask screen: a question about the library in the person's words,
// which the text model translates into a query; the query is checked and
// run over the library, so the answer (a number, a date, items, or a
// refusal) is computed by code. The query is always shown and can be
// edited and run, or kept as the correction of the question's query, which
// becomes training data for the translator (trained here too). The items
// an answer came from open as the Library screen shows them.
import { useState } from "preact/hooks";
import { api, toAppError } from "../api/ipc";
import type {
  AppError,
  AskAnswer,
  AskCorrectionAnswer,
  AskHistory,
  AskValue,
  Item,
  ResolvedRange,
  RunSummary,
  SourceItem,
  Translation,
} from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { ItemDetails } from "../components/ItemDetails";
import { ProgressBar } from "../components/ProgressBar";
import { fileName, plural } from "../lib/progress";
import { useJob, useLoad } from "../lib/useJob";

/** What the grammar's `cannot_answer` means. */
export const REFUSAL = "I can't answer that from your library.";

/** Fewest corrected questions worth training on (`MIN_PAIRS` in
 * crates/personalize/src/ask/train.rs). */
export const MIN_PAIRS = 4;

/** An answer as the screen shows it: of a question, of a query written by
 * hand, or of a kept correction. */
interface Shown {
  question: string | null;
  canonical: string;
  value: AskValue;
  sources: SourceItem[];
  ranges: ResolvedRange[];
  notes: string[];
  translation: Translation | null;
}

function fromAnswer(answer: AskAnswer): Shown {
  return { ...answer, translation: answer.translation ?? null };
}

function fromCorrection(correction: AskCorrectionAnswer): Shown {
  return { ...correction, translation: null };
}

/** The answer in words. */
export function answerText(value: AskValue): string {
  switch (value.type) {
    case "refusal":
      return REFUSAL;
    case "number":
      return String(value.value);
    case "date":
      return value.date;
    case "items":
      return plural(value.total, "item");
    case "unknown":
      return `No answer: ${value.reason}`;
  }
}

/** The question whose query the person may correct. */
interface Asked {
  askId: number;
  question: string;
}

export function Ask({ active }: { active: boolean }) {
  const [question, setQuestion] = useState("");
  const [query, setQuery] = useState("");
  const [shown, setShown] = useState<Shown | null>(null);
  const [asked, setAsked] = useState<Asked | null>(null);
  const [busy, setBusy] = useState<"question" | "query" | "correct" | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const [kept, setKept] = useState<string | null>(null);
  const [selected, setSelected] = useState<Item | null>(null);
  const history = useLoad(() => api.askHistory(), [], active);

  const run = async (kind: "question" | "query" | "correct", work: () => Promise<Shown>) => {
    setBusy(kind);
    setError(null);
    setKept(null);
    try {
      const answer = await work();
      setShown(answer);
      setQuery(answer.canonical);
      setSelected(null);
    } catch (e) {
      setError(toAppError(e));
    } finally {
      setBusy(null);
      void history.reload();
    }
  };

  const askQuestion = () =>
    run("question", async () => {
      const answer = await api.askQuestion(question.trim());
      setAsked(answer.question !== null ? { askId: answer.ask_id, question: answer.question } : null);
      return fromAnswer(answer);
    });
  // Running an edited query previews its answer; the question it may
  // correct stays, so it can then be kept.
  const runQuery = () => run("query", async () => fromAnswer(await api.askQuery(query.trim())));
  const keep = (target: Asked) =>
    run("correct", async () => {
      const correction = await api.correctAsk(target.askId, query.trim());
      setKept(`Kept as the query for “${target.question}”: the translator learns from it.`);
      return fromCorrection(correction);
    });

  const open = async (id: number) => {
    try {
      setSelected(await api.getItem(id));
    } catch (e) {
      setError(toAppError(e));
    }
  };

  return (
    <section class="screen ask" aria-labelledby="ask-title">
      <h2 id="ask-title">Ask</h2>
      <p class="muted">
        Ask about your photos and notes. The model only writes a query; the answer is computed from your library, and
        the query is shown so you can check it and correct it.
      </p>
      <form
        class="card row"
        onSubmit={(e) => {
          e.preventDefault();
          if (question.trim() && busy === null) void askQuestion();
        }}
      >
        <label class="grow">
          Question
          <input
            id="ask-question"
            type="text"
            maxLength={500}
            placeholder="e.g. how many photos of Rex did I take last summer?"
            value={question}
            onInput={(e) => setQuestion(e.currentTarget.value)}
          />
        </label>
        <button id="ask-submit" class="primary" type="submit" disabled={busy !== null || !question.trim()}>
          Ask
        </button>
        {busy === "question" && (
          <span class="muted" role="status">
            Translating… (the first question loads the model)
          </span>
        )}
      </form>
      <ErrorNote error={error} />

      <div class="library-body">
        <div class="card" aria-labelledby="ask-answer-title">
          <h3 id="ask-answer-title">Answer</h3>
          {shown ? (
            <AnswerView shown={shown} selected={selected?.id ?? null} onOpen={(id) => void open(id)} />
          ) : (
            <p class="muted">Ask a question, or write a query below.</p>
          )}
          <form
            class="ask-query"
            onSubmit={(e) => {
              e.preventDefault();
              if (query.trim() && busy === null) void runQuery();
            }}
          >
            <label>
              Query
              <textarea
                id="ask-query"
                class="query-text"
                rows={2}
                spellcheck={false}
                value={query}
                placeholder={'e.g. count photos label "Rex" in last_summer'}
                onInput={(e) => setQuery(e.currentTarget.value)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && query.trim() && busy === null) void runQuery();
                }}
              />
            </label>
            <div class="row">
              <button id="ask-run" type="submit" disabled={busy !== null || !query.trim()}>
                Run this query
              </button>
              {asked && (
                <>
                  <button
                    id="ask-correct"
                    class="primary"
                    type="button"
                    disabled={busy !== null || !query.trim()}
                    onClick={() => void keep(asked)}
                  >
                    Keep as correction
                  </button>
                  <span class="muted">for “{asked.question}”</span>
                </>
              )}
            </div>
            {kept && (
              <p id="ask-kept" role="status">
                {kept}
              </p>
            )}
          </form>
        </div>
        {selected && (
          <ItemDetails
            item={selected}
            idPrefix="ask-"
            onChanged={() => void open(selected.id)}
            onClose={() => setSelected(null)}
          />
        )}
      </div>

      <Teach history={history.value} onTrained={() => void history.reload()} />
      <PastAsks history={history.value} />
    </section>
  );
}

function AnswerView({
  shown,
  selected,
  onOpen,
}: {
  shown: Shown;
  selected: number | null;
  onOpen: (id: number) => void;
}) {
  const { translation } = shown;
  return (
    <>
      {shown.question && <p class="muted">“{shown.question}”</p>}
      <p id="ask-answer" class="answer" data-type={shown.value.type} aria-live="polite">
        {answerText(shown.value)}
      </p>
      {translation && (
        <p id="ask-translation" class="muted">
          Translated in {translation.seconds.toFixed(2)} s ({plural(translation.query_tokens, "token")}; the grammar took{" "}
          {translation.mask_ms_per_token.toFixed(2)} ms per token)
        </p>
      )}
      {shown.ranges.length > 0 && (
        <ul id="ask-ranges" class="plain" aria-label="Date ranges">
          {shown.ranges.map((r) => (
            <li key={r.range}>
              <code>{r.range}</code> = {r.span.from} to {r.span.to}
            </li>
          ))}
        </ul>
      )}
      {shown.notes.length > 0 && (
        <ul id="ask-notes" aria-label="Notes on the answer">
          {shown.notes.map((note) => (
            <li key={note}>{note}</li>
          ))}
        </ul>
      )}
      {shown.sources.length > 0 && (
        <>
          <h4>From {plural(shown.sources.length, "item")}</h4>
          <ul class="text-list" id="ask-sources" aria-label="Items the answer came from">
            {shown.sources.map((item) => (
              <li key={item.id}>
                <button class="text-row" aria-pressed={item.id === selected} onClick={() => onOpen(item.id)}>
                  <span class="badge">{item.kind}</span>
                  <span class="name">{fileName(item.path)}</span>
                  <span class="muted">{item.date ?? "no date"}</span>
                  {item.labels.length > 0 && <span class="badge">{item.labels.join(", ")}</span>}
                  {item.score !== undefined && <span class="muted">{Math.round(item.score * 100)}% alike</span>}
                </button>
              </li>
            ))}
          </ul>
        </>
      )}
    </>
  );
}

/** Corrected questions, one per question (as training counts them). */
function correctedQuestions(history: AskHistory | null): number {
  return new Set((history?.corrections ?? []).flatMap((c) => (c.question === null ? [] : [c.question]))).size;
}

function Teach({ history, onTrained }: { history: AskHistory | null; onTrained: () => void }) {
  const job = useJob<RunSummary>(() => onTrained(), "train_ask");
  const pairs = correctedQuestions(history);
  const result = job.progress?.result;
  return (
    <div class="card" aria-labelledby="ask-teach-title">
      <h3 id="ask-teach-title">Teach the translator your words</h3>
      <p class="muted">
        {plural(pairs, "corrected question")}. Training a small adapter on them (at least {MIN_PAIRS}) teaches the model
        to write the queries you mean; the next question uses it.
      </p>
      <div class="row">
        <button
          id="ask-train"
          onClick={() => void job.start((onEvent) => api.trainAsk({}, onEvent))}
          disabled={job.running || pairs < MIN_PAIRS}
        >
          Train on my corrections
        </button>
        {job.running && (
          <button onClick={() => void job.cancel()} aria-label="Stop training the translator">
            Stop
          </button>
        )}
      </div>
      <ErrorNote error={job.progress?.error ?? null} />
      {job.progress && job.progress.status === "running" && (
        <ProgressBar progress={job.progress} label="Translator training progress" />
      )}
      {result && (
        <p id="ask-train-result" role="status">
          {result.outcome === "paused" || result.adapter_id === null
            ? `Stopped at step ${result.steps} of ${result.total_steps}; nothing is used until a training finishes.`
            : `Adapter ${result.adapter_id} now translates your questions (${result.steps} steps).`}
        </p>
      )}
    </div>
  );
}

function PastAsks({ history }: { history: AskHistory | null }) {
  if (!history || history.asks.length === 0) return null;
  const asks = [...history.asks].reverse();
  return (
    <details class="card">
      <summary>Past asks ({history.asks.length})</summary>
      <ul class="text-list" aria-label="Past asks">
        {asks.map((record) => (
          <li key={record.id}>
            <p>
              <strong>{record.question ?? "(query written by hand)"}</strong>{" "}
              <span class="muted">{record.asked_at}</span>
            </p>
            <p>
              <code>{record.query}</code>
            </p>
            {history.corrections
              .filter((c) => c.ask_id === record.id)
              .map((c) => (
                <p key={c.id}>
                  corrected: <code>{c.query}</code>
                </p>
              ))}
          </li>
        ))}
      </ul>
    </details>
  );
}
