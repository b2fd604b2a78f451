import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import type { AskAnswer, AskHistory, JobEvent, RunSummary } from "../src/api/types";
import { Ask, REFUSAL, answerText } from "../src/screens/Ask";
import { photo, text } from "./fixtures";

const EMPTY_HISTORY: AskHistory = { asks: [], corrections: [] };

const rex = photo(7, "rex-beach.jpg", ["Rex"]);
const lisbon = text(9, "lisbon.md", ["Rex"]);

function answer(overrides: Partial<AskAnswer> = {}): AskAnswer {
  return {
    ask_id: 3,
    question: "how many photos of Rex did I take last summer?",
    query: 'count photos label "rex"',
    canonical: 'count photos label "Rex"',
    value: { type: "number", value: 1 },
    sources: [{ id: 7, kind: "photo", path: "/photos/rex-beach.jpg", sha256: rex.sha256, date: "2024-07-02T10:00:00", labels: ["Rex"] }],
    ranges: [],
    notes: ["counted photos with the label Rex"],
    translation: { query: 'count photos label "rex"', prompt_tokens: 400, query_tokens: 9, seconds: 1.234, mask_ms_per_token: 0.21 },
    ...overrides,
  };
}

describe("Ask screen", () => {
  it("answers a question with its query, its items and the translation time, and keeps a correction", async () => {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((cmd, payload) => {
      if (cmd === "running_jobs") return [];
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      if (cmd === "ask_history") return EMPTY_HISTORY;
      if (cmd === "ask_question") return answer();
      if (cmd === "get_item") return rex;
      if (cmd === "item_text") return null;
      if (cmd === "ask_query")
        return answer({
          ask_id: 4,
          question: null,
          canonical: 'count photos label "Rex" in last_summer',
          value: { type: "number", value: 0 },
          sources: [],
          ranges: [{ range: "last_summer", span: { from: "2024-06-01", to: "2024-08-31" } }],
          notes: [],
          translation: undefined,
        });
      if (cmd === "correct_ask")
        return {
          correction_id: 1,
          ask_id: 3,
          question: "how many photos of Rex did I take last summer?",
          canonical: 'count notes label "Rex"',
          value: { type: "number", value: 2 },
          sources: [],
          ranges: [],
          notes: [],
        };
      throw { kind: "internal", message: cmd };
    });
    render(<Ask active={true} />);
    fireEvent.input(screen.getByLabelText("Question"), { target: { value: "how many photos of Rex did I take last summer?" } });
    fireEvent.click(screen.getByRole("button", { name: "Ask" }));
    await waitFor(() => expect(document.getElementById("ask-answer")?.textContent).toBe("1"));
    expect(calls.find((c) => c.cmd === "ask_question")?.args).toEqual({ question: "how many photos of Rex did I take last summer?" });
    const query = screen.getByLabelText("Query") as HTMLTextAreaElement;
    expect(query.value).toBe('count photos label "Rex"');
    expect(document.getElementById("ask-translation")?.textContent).toMatch(/Translated in 1\.23 s \(9 tokens/);
    expect(screen.getByText("counted photos with the label Rex")).toBeTruthy();

    // A source opens as the Library shows it.
    fireEvent.click(screen.getByRole("button", { name: /rex-beach\.jpg/ }));
    expect(await screen.findByRole("complementary", { name: "Details of rex-beach.jpg" })).toBeTruthy();
    expect(calls.find((c) => c.cmd === "get_item")?.args).toEqual({ id: 7 });
    expect(document.getElementById("ask-new-label")).toBeTruthy();

    // An edited query runs (a preview); the question can still be corrected.
    fireEvent.input(query, { target: { value: 'count photos label "Rex" in last_summer' } });
    fireEvent.click(screen.getByRole("button", { name: "Run this query" }));
    await waitFor(() => expect(document.getElementById("ask-answer")?.textContent).toBe("0"));
    expect(calls.find((c) => c.cmd === "ask_query")?.args).toEqual({ query: 'count photos label "Rex" in last_summer' });
    expect(document.getElementById("ask-ranges")?.textContent).toBe("last_summer = 2024-06-01 to 2024-08-31");
    expect(document.getElementById("ask-translation")).toBeNull();

    fireEvent.input(query, { target: { value: 'count notes label "rex"' } });
    fireEvent.click(screen.getByRole("button", { name: "Keep as correction" }));
    await waitFor(() => expect(document.getElementById("ask-answer")?.textContent).toBe("2"));
    expect(calls.find((c) => c.cmd === "correct_ask")?.args).toEqual({ id: 3, query: 'count notes label "rex"' });
    expect(query.value).toBe('count notes label "Rex"');
    expect(screen.getByRole("status").textContent).toMatch(/Kept as the query for “how many photos of Rex/);
  });

  it("says when it cannot answer, and offers no correction for a query written by hand", async () => {
    mockIPC((cmd) => {
      if (cmd === "running_jobs") return [];
      if (cmd === "ask_history") return EMPTY_HISTORY;
      if (cmd === "ask_query") return answer({ ask_id: 5, question: null, canonical: "cannot_answer", value: { type: "refusal" }, sources: [], notes: [], translation: undefined });
      throw { kind: "internal", message: cmd };
    });
    render(<Ask active={true} />);
    fireEvent.input(screen.getByLabelText("Query"), { target: { value: "cannot_answer" } });
    fireEvent.click(screen.getByRole("button", { name: "Run this query" }));
    await waitFor(() => expect(document.getElementById("ask-answer")?.textContent).toBe(REFUSAL));
    expect(REFUSAL).toBe("I can't answer that from your library.");
    expect(screen.queryByRole("button", { name: "Keep as correction" })).toBeNull();
  });

  it("shows why a query does not run, and keeps the query to fix", async () => {
    mockIPC((cmd) => {
      if (cmd === "running_jobs") return [];
      if (cmd === "ask_history") return EMPTY_HISTORY;
      if (cmd === "ask_query") throw { kind: "invalid_input", message: "the query does not fit your library: unknown label 'Rexx', did you mean 'Rex'?" };
      throw { kind: "internal", message: cmd };
    });
    render(<Ask active={true} />);
    const query = screen.getByLabelText("Query") as HTMLTextAreaElement;
    fireEvent.input(query, { target: { value: 'count photos label "Rexx"' } });
    fireEvent.click(screen.getByRole("button", { name: "Run this query" }));
    expect((await screen.findByRole("alert")).textContent).toMatch(/did you mean 'Rex'\?/);
    expect(query.value).toBe('count photos label "Rexx"');
  });

  it("words every kind of value", () => {
    expect(answerText({ type: "number", value: 12 })).toBe("12");
    expect(answerText({ type: "date", date: "2024-02-29" })).toBe("2024-02-29");
    expect(answerText({ type: "items", total: 1 })).toBe("1 item");
    expect(answerText({ type: "items", total: 3 })).toBe("3 items");
    expect(answerText({ type: "unknown", reason: "no photos of Rex" })).toBe("No answer: no photos of Rex");
    expect(answerText({ type: "refusal" })).toBe(REFUSAL);
  });

  it("trains the translator once enough questions are corrected, and lists past asks", async () => {
    let channel: Channel<JobEvent<RunSummary>> | null = null;
    const corrections = ["a?", "b?", "c?", "d?"].map((question, i) => ({ id: i + 1, ask_id: i + 1, question, query: "count notes", corrected_at: "" }));
    const history: AskHistory = {
      asks: [
        { id: 1, question: "a?", query: "count photos", asked_at: "2025-01-01T00:00:00Z" },
        { id: 2, question: null, query: 'list notes text "lisbon"', asked_at: "2025-01-02T00:00:00Z" },
      ],
      corrections,
    };
    mockIPC((cmd, payload) => {
      if (cmd === "running_jobs") return [];
      if (cmd === "ask_history") return history;
      if (cmd === "train_ask") {
        channel = (payload as Record<string, unknown>).onEvent as Channel<JobEvent<RunSummary>>;
        return 11;
      }
      throw { kind: "internal", message: cmd };
    });
    render(<Ask active={true} />);
    expect(await screen.findByText(/4 corrected questions/)).toBeTruthy();
    expect(screen.getByText("(query written by hand)")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Train on my corrections" }));
    await waitFor(() => expect(channel).not.toBeNull());
    const send = (e: JobEvent<RunSummary>) => channel?.onmessage(e);
    send({ event: "begin", task: "Training", total: 80 });
    send({ event: "advance", done: 40 });
    expect(await screen.findByRole("progressbar", { name: "Translator training progress" })).toBeTruthy();
    send({
      event: "done",
      result: { run_id: 2, outcome: "completed", steps: 80, total_steps: 80, base_validation_loss: 2, validation_loss: 1, tokens_per_second: 100, adapter_id: 6, items: 14, tokens: 900 },
    });
    expect((await screen.findByText(/Adapter 6 now translates your questions/)).id).toBe("ask-train-result");
  });

  it("cannot train on too few corrections", async () => {
    mockIPC((cmd) => {
      if (cmd === "running_jobs") return [];
      if (cmd === "ask_history") return EMPTY_HISTORY;
      throw { kind: "internal", message: cmd };
    });
    render(<Ask active={true} />);
    expect(await screen.findByText(/0 corrected questions/)).toBeTruthy();
    expect((screen.getByRole("button", { name: "Train on my corrections" }) as HTMLButtonElement).disabled).toBe(true);
  });
});
