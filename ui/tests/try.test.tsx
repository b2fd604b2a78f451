import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import type { GenerateEvent } from "../src/api/types";
import { Try } from "../src/screens/Try";
import { photo, requestDefaults } from "./fixtures";

describe("Try screen", () => {
  it("streams base and personalized completions side by side", async () => {
    let channel: Channel<GenerateEvent> | null = null;
    let request: Record<string, unknown> = {};
    mockIPC((cmd, payload) => {
      if (cmd === "running_jobs") return [];
      const args = (payload ?? {}) as Record<string, unknown>;
      if (cmd === "list_adapters")
        return [{ id: 4, name: "run 2", run_id: 2, source: "trained", base_model: "stories260k", base_model_sha256: null, sha256: "x", rank: 8, alpha: 16, targets: ["q_proj"], path: "adapters/x", created_at: "" }];
      if (cmd === "list_items") return [];
      if (cmd === "request_defaults") return requestDefaults;
      if (cmd === "generate_text") {
        channel = args.onEvent as Channel<GenerateEvent>;
        request = args.request as Record<string, unknown>;
        return 9;
      }
      throw { kind: "internal", message: cmd };
    });
    render(<Try active={true} />);
    await screen.findByText(/Adapter 4/);
    // Length and temperature are the library's defaults.
    await waitFor(() =>
      expect((screen.getByLabelText("Temperature") as HTMLInputElement).value).toBe(
        String(requestDefaults.generate.temperature),
      ),
    );
    // happy-dom checks `step` with a binary floating-point remainder (0.7,
    // even 0.5, is "not a multiple" of 0.1, which browsers accept), so the
    // form would not submit: the test picks greedy decoding (0).
    fireEvent.input(screen.getByLabelText("Temperature"), { target: { value: "0" } });
    fireEvent.input(screen.getByLabelText("Prompt"), { target: { value: "Once upon a time" } });
    const button = screen.getByRole("button", { name: "Generate" }) as HTMLButtonElement;
    await waitFor(() => expect(button.disabled).toBe(false));
    fireEvent.click(button);
    await waitFor(() => expect(channel).not.toBeNull());
    expect(request).toMatchObject({
      prompt: "Once upon a time",
      adapter_id: 4,
      compare: true,
      max_tokens: requestDefaults.generate.max_tokens,
      temperature: 0,
    });
    const send = (e: GenerateEvent) => channel?.onmessage(e);
    send({ event: "loading", model: "stories260k" });
    send({ event: "begin", pass: "base" });
    send({ event: "text", pass: "base", text: " there was" });
    send({ event: "text", pass: "base", text: " a dog." });
    send({ event: "end", pass: "base", prompt_tokens: 5, new_tokens: 4, tokens_per_second: 100 });
    send({ event: "begin", pass: "personalized" });
    send({ event: "text", pass: "personalized", text: " thou art" });
    await waitFor(() => expect(document.getElementById("completion-base")?.textContent).toBe(" there was a dog."));
    expect(document.getElementById("completion-personalized")?.textContent).toBe(" thou art");
    expect(document.getElementById("completion-personalized")?.getAttribute("aria-busy")).toBe("true");
    send({ event: "end", pass: "personalized", prompt_tokens: 5, new_tokens: 2, tokens_per_second: 90 });
    send({ event: "done" });
    expect(await screen.findByText("Done.")).toBeTruthy();
  });

  it("suggests labels with confidence and records accept and reject", async () => {
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    const bike = photo(5, "motorcycle.png");
    mockIPC((cmd, payload) => {
      if (cmd === "running_jobs") return [];
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      if (cmd === "list_adapters" || cmd === "list_items") return [];
      if (cmd === "suggest_tags")
        return [{ item: bike, suggestions: [{ label: "things", confidence: 0.81, suggested: true }, { label: "animal", confidence: 0.12, suggested: false }] }];
      if (cmd === "accept_tag") return { ...bike, labels: ["things"] };
      if (cmd === "reject_tag") return { ...bike, labels: ["things"] };
      throw { kind: "internal", message: cmd };
    });
    render(<Try active={true} />);
    fireEvent.click(screen.getByRole("button", { name: /Suggest labels/ }));
    expect(await screen.findByText(/things 81%/)).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Accept things for motorcycle.png" }));
    await waitFor(() => expect(calls.find((c) => c.cmd === "accept_tag")?.args).toEqual({ id: 5, label: "things" }));
    fireEvent.click(await screen.findByRole("button", { name: "Reject animal for motorcycle.png" }));
    await waitFor(() => expect(calls.find((c) => c.cmd === "reject_tag")?.args).toEqual({ id: 5, label: "animal" }));
  });
});
