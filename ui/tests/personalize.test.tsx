import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import { requestDefaults } from "./fixtures";
import type { JobEvent, RunSummary, TaggerSummary } from "../src/api/types";
import { Personalize } from "../src/screens/Personalize";

function backend() {
  const calls: { cmd: string; args: Record<string, unknown> }[] = [];
  let channel: Channel<JobEvent<RunSummary>> | null = null;
  mockIPC((cmd, payload) => {
    if (cmd === "running_jobs") return [];
    const args = (payload ?? {}) as Record<string, unknown>;
    calls.push({ cmd, args });
    switch (cmd) {
      case "request_defaults":
        return requestDefaults;
      case "list_runs":
      case "list_labels":
        return [];
      case "list_models":
        return [{ name: "stories260k", kind: "text", description: "tiny", default: true, present: true }];
      case "start_text_training":
      case "train_photo_tagger":
        channel = args.onEvent as Channel<JobEvent<RunSummary>>;
        return 7;
      case "cancel_job":
        return null;
      default:
        throw { kind: "internal", message: `unexpected ${cmd}` };
    }
  });
  return {
    calls,
    send: (e: JobEvent<RunSummary>) => channel?.onmessage(e),
    sendTagger: (e: JobEvent<TaggerSummary>) => (channel as unknown as Channel<JobEvent<TaggerSummary>> | null)?.onmessage(e),
    started: () => channel !== null,
  };
}

describe("Personalize screen", () => {
  it("starts a run, shows progress and the loss curve, pauses, and reports the result", async () => {
    const fake = backend();
    render(<Personalize active={true} />);
    // The form shows the library's defaults.
    await waitFor(() =>
      expect((screen.getByLabelText("Sequence length") as HTMLInputElement).value).toBe(
        String(requestDefaults.text_training.seq_len),
      ),
    );
    fireEvent.input(screen.getByLabelText("Steps"), { target: { value: "20" } });
    fireEvent.input(screen.getByLabelText(/^Base model/), { target: { value: "/models/stories260K.bin" } });
    fireEvent.click(screen.getByRole("button", { name: "Start" }));
    await waitFor(() => expect(fake.started()).toBe(true));
    const request = fake.calls.find((c) => c.cmd === "start_text_training")?.args.request as Record<string, unknown>;
    expect(request.steps).toBe(20);
    expect(request.model).toBe("/models/stories260K.bin");
    // What the person left alone is the library's default.
    expect(request.seq_len).toBe(requestDefaults.text_training.seq_len);

    fake.send({ event: "metric", name: "validation_loss", step: 0, value: 6.0 });
    fake.send({ event: "begin", task: "Training", total: 20 });
    fake.send({ event: "advance", done: 5 });
    fake.send({ event: "metric", name: "loss", step: 5, value: 5.0 });
    const bar = await screen.findByRole("progressbar", { name: "Training progress" });
    await waitFor(() => expect(bar.getAttribute("aria-valuenow")).toBe("5"));
    expect(screen.getByRole("img").getAttribute("aria-label")).toContain("latest training loss 5.000");

    fireEvent.click(screen.getByRole("button", { name: "Pause" }));
    await waitFor(() => expect(fake.calls.find((c) => c.cmd === "cancel_job")?.args).toEqual({ id: 7 }));
    fake.send({
      event: "done",
      result: { run_id: 3, outcome: "paused", steps: 5, total_steps: 20, base_validation_loss: 6, validation_loss: null, tokens_per_second: 100, adapter_id: null, items: 4, tokens: 900 },
    });
    expect((await screen.findByText(/paused at step 5 of 20/)).getAttribute("data-outcome")).toBe("paused");
  });

  it("says when the photo labels were learned no better than guessing", async () => {
    const tagger = (held_out_accuracy: (number | null)[]): TaggerSummary => ({
      run_id: 2,
      tagger_id: 1,
      labels: ["animal", "things"],
      examples: 4,
      held_out_accuracy,
      thresholds: [0.5, 0.5],
      model_sha256: "ab".repeat(32),
      fine_tune_loss: null,
      path: "/library/taggers/ab.json",
      newly_embedded: 0,
    });
    const fake = backend();
    const { unmount } = render(<Personalize active={true} />);
    fireEvent.click(screen.getByRole("button", { name: "Learn my labels" }));
    await waitFor(() => expect(fake.started()).toBe(true));
    fake.sendTagger({ event: "done", result: tagger([0.25, 0.5]) });
    expect((await screen.findByText("Learned from 4 photos")).closest("table")?.textContent).toContain(
      "25% (no better than chance: not suggested yet)",
    );
    expect((await screen.findByRole("note")).textContent).toContain("no better than guessing");
    unmount();

    const second = backend();
    render(<Personalize active={true} />);
    fireEvent.click(screen.getByRole("button", { name: "Learn my labels" }));
    await waitFor(() => expect(second.started()).toBe(true));
    second.sendTagger({ event: "done", result: tagger([0.9, null]) });
    await screen.findByText("Learned from 4 photos");
    expect(screen.queryByRole("note")).toBeNull();
  });

  it("shows a failure with a hint", async () => {
    const fake = backend();
    render(<Personalize active={true} />);
    fireEvent.click(screen.getByRole("button", { name: "Start" }));
    await waitFor(() => expect(fake.started()).toBe(true));
    fake.send({ event: "failed", error: { kind: "no_data", message: "the library has no text to learn from" } });
    const alert = await screen.findByRole("alert");
    expect(alert.textContent).toContain("no text to learn from");
    expect(alert.textContent).toContain("Library");
  });

  it("follows a training that was running when the page reloaded", async () => {
    let attached: Channel<JobEvent<RunSummary>> | null = null;
    const calls: string[] = [];
    mockIPC((cmd, payload) => {
      calls.push(cmd);
      const args = (payload ?? {}) as Record<string, unknown>;
      switch (cmd) {
        case "running_jobs":
          return [{ id: 9, kind: "train_text", cancelling: false }];
        case "attach_job":
          expect(args.id).toBe(9);
          attached = args.onEvent as Channel<JobEvent<RunSummary>>;
          return null;
        case "request_defaults":
          return requestDefaults;
        case "list_runs":
        case "list_labels":
        case "list_models":
          return [];
        case "cancel_job":
          return null;
        default:
          throw { kind: "internal", message: `unexpected ${cmd}` };
      }
    });
    render(<Personalize active={true} />);
    await waitFor(() => expect(attached).not.toBeNull());
    // The replay: what happened before the reload, then the rest.
    const send = (e: JobEvent<RunSummary>) => attached?.onmessage(e);
    send({ event: "begin", task: "Training", total: 40 });
    send({ event: "advance", done: 12 });
    send({ event: "metric", name: "loss", step: 12, value: 3.25 });
    const bar = await screen.findByRole("progressbar", { name: "Training progress" });
    await waitFor(() => expect(bar.getAttribute("aria-valuenow")).toBe("12"));
    // It can be paused from the reloaded page.
    fireEvent.click(screen.getByRole("button", { name: "Pause" }));
    await waitFor(() => expect(calls).toContain("cancel_job"));
    send({
      event: "done",
      result: { run_id: 3, outcome: "paused", steps: 12, total_steps: 40, base_validation_loss: null, validation_loss: null, tokens_per_second: 90, adapter_id: null, items: 2, tokens: 500 },
    });
    expect((await screen.findByRole("status")).textContent).toContain("paused at step 12 of 40");
  });
});

describe("Personalize screen on a phone", () => {
  it("pauses training when the app goes to the background and continues it on return", async () => {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    const channels: Channel<JobEvent<RunSummary>>[] = [];
    mockIPC((cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      switch (cmd) {
        case "running_jobs":
          return [];
        case "app_platform":
          return { mobile: true };
        case "request_defaults":
          return requestDefaults;
        case "list_runs":
        case "list_labels":
          return [];
        case "list_models":
          return [{ name: "stories260k", kind: "text", description: "tiny", default: true, present: true, installable: false, folder: false }];
        case "start_text_training":
        case "resume_text_training":
          channels.push(args.onEvent as Channel<JobEvent<RunSummary>>);
          return channels.length;
        case "cancel_job":
          return null;
        default:
          throw { kind: "internal", message: `unexpected ${cmd}` };
      }
    });
    let hidden = false;
    Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
    try {
      render(<Personalize active={true} />);
      await waitFor(() => expect(calls.some((c) => c.cmd === "app_platform")).toBe(true));
      await waitFor(() => expect(calls.some((c) => c.cmd === "request_defaults")).toBe(true));
      fireEvent.click(screen.getByRole("button", { name: "Start" }));
      await waitFor(() => expect(channels.length).toBe(1));
      // Hidden at once: the pause waits for the job's id.
      channels[0]?.onmessage({ event: "begin", task: "Training", total: 200 });

      hidden = true;
      document.dispatchEvent(new Event("visibilitychange"));
      await waitFor(() => expect(calls.find((c) => c.cmd === "cancel_job")?.args).toEqual({ id: 1 }));
      channels[0]?.onmessage({
        event: "done",
        result: { run_id: 9, outcome: "paused", steps: 40, total_steps: 200, base_validation_loss: 6, validation_loss: null, tokens_per_second: 100, adapter_id: null, items: 4, tokens: 900 },
      });
      // Nothing continues while the app is in the background.
      await new Promise((r) => setTimeout(r, 20));
      expect(calls.some((c) => c.cmd === "resume_text_training")).toBe(false);

      hidden = false;
      document.dispatchEvent(new Event("visibilitychange"));
      await waitFor(() => expect(calls.find((c) => c.cmd === "resume_text_training")?.args.run).toBe(9));
      // The paused run is continued, not given up.
      expect(calls.some((c) => c.cmd === "discard_run")).toBe(false);
    } finally {
      Reflect.deleteProperty(document, "hidden");
    }
  });
});
