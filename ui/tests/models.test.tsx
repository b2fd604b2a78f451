import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import type { Installed, JobEvent, ModelChoice } from "../src/api/types";
import { ModelSetup } from "../src/components/ModelSetup";

const smollm: ModelChoice = {
  name: "smollm2-135m-instruct",
  kind: "text",
  description: "SmolLM2 135M",
  default: true,
  present: false,
  installable: true,
  folder: false,
};
const minilm: ModelChoice = {
  name: "all-minilm-l6-v2",
  kind: "embedding",
  description: "MiniLM",
  default: true,
  present: true,
  installable: true,
  folder: true,
};

describe("Model setup", () => {
  it("installs a missing default model from the file the person picks", async () => {
    let installed = false;
    let channel: Channel<JobEvent<Installed>> | null = null;
    const calls: { cmd: string; args: Record<string, unknown> }[] = [];
    mockIPC((cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      calls.push({ cmd, args });
      switch (cmd) {
        case "running_jobs":
          return [];
        case "list_models":
          return [{ ...smollm, present: installed }, minilm];
        case "plugin:dialog|open":
          return "/sdcard/Download/SmolLM2-135M-Instruct.Q4_1.gguf";
        case "install_model":
          channel = args.onEvent as Channel<JobEvent<Installed>>;
          return 3;
        default:
          throw { kind: "internal", message: `unexpected ${cmd}` };
      }
    });
    render(<ModelSetup />);
    // Only the missing default is offered; the present one is not.
    const choose = await screen.findByRole("button", { name: "Choose the file…" });
    expect(screen.queryByText(/all-minilm-l6-v2/)).toBeNull();
    fireEvent.click(choose);
    await waitFor(() => expect(channel).not.toBeNull());
    const request = calls.find((c) => c.cmd === "install_model")?.args;
    expect(request?.name).toBe("smollm2-135m-instruct");
    expect(request?.path).toBe("/sdcard/Download/SmolLM2-135M-Instruct.Q4_1.gguf");
    const dialog = calls.find((c) => c.cmd === "plugin:dialog|open")?.args.options as Record<string, unknown>;
    expect(dialog.directory).toBe(false);

    installed = true;
    channel!.onmessage({ event: "begin", task: "Installing smollm2-135m-instruct", total: 1000 });
    channel!.onmessage({ event: "advance", done: 1000 });
    channel!.onmessage({
      event: "done",
      result: { name: "smollm2-135m-instruct", path: "/models/smollm2/x.gguf", bytes: 1000 },
    });
    expect(await screen.findByText(/Installed smollm2-135m-instruct/)).toBeTruthy();
    // The list is read again: nothing is missing any more.
    await waitFor(() => expect(screen.queryByRole("button", { name: "Choose the file…" })).toBeNull());
  });

  it("says why a copy was refused", async () => {
    let channel: Channel<JobEvent<Installed>> | null = null;
    mockIPC((cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      if (cmd === "running_jobs") return [];
      if (cmd === "list_models") return [smollm];
      if (cmd === "plugin:dialog|open") return "/tmp/other.gguf";
      if (cmd === "install_model") {
        channel = args.onEvent as Channel<JobEvent<Installed>>;
        return 4;
      }
      throw { kind: "internal", message: `unexpected ${cmd}` };
    });
    render(<ModelSetup />);
    fireEvent.click(await screen.findByRole("button", { name: "Choose the file…" }));
    await waitFor(() => expect(channel).not.toBeNull());
    channel!.onmessage({
      event: "failed",
      error: { kind: "model_missing", message: "/tmp/other.gguf has sha256 ab, but the registry pins cd: not the registry's file" },
    });
    expect(await screen.findByText(/not the registry's file/)).toBeTruthy();
  });
});
