import { fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import { requestDefaults } from "./fixtures";
import type { FederationOverview, JobEvent, MembershipStatus, ParticipationSummary, UploadRecord } from "../src/api/types";
import { Federation } from "../src/screens/Federation";

const conditions = { on_power: true, idle: false, local_hour: 14 };

function member(overrides: Partial<MembershipStatus> = {}): MembershipStatus {
  return {
    id: 1,
    server_url: "https://127.0.0.1:8443",
    federation_id: "notes",
    device_id: "dev-1",
    joined_at: "2026-01-01T10:00:00Z",
    rounds: [],
    bytes_sent: 0,
    epsilon_spent: 0,
    epsilon_budget: 8,
    delta: 1e-5,
    policy: { require_power: true, require_idle: true, hours: null },
    eligible_now: { eligible: false, reasons: ["the machine is busy"] },
    log_size: 0,
    ...overrides,
  };
}

const upload: UploadRecord = {
  federation_id: "notes",
  server_url: "https://127.0.0.1:8443",
  delta: 1e-5,
  id: 1,
  membership_id: 1,
  round: 4,
  bytes_sent: 2_500_000,
  bytes_received: 40_000,
  rho: 0.5,
  epsilon: 5.3,
  upload_sha256: "ab".repeat(32),
  global_version: 4,
  run_id: 9,
  uploaded_at: "2026-01-01T11:00:00.123Z",
};

/** A backend whose memberships change as the commands say. */
function backend(start: MembershipStatus[] = []) {
  let memberships = start;
  let uploads: UploadRecord[] = [];
  const calls: { cmd: string; args: Record<string, unknown> }[] = [];
  let channel: Channel<JobEvent<ParticipationSummary>> | null = null;
  mockIPC((cmd, payload) => {
    if (cmd === "running_jobs") return [];
    const args = (payload ?? {}) as Record<string, unknown>;
    calls.push({ cmd, args });
    switch (cmd) {
      case "request_defaults":
        return requestDefaults;
      case "federation_status":
        return { memberships, conditions } satisfies FederationOverview;
      case "federation_history":
        return uploads;
      case "join_federation": {
        const request = args.request as { server_url: string };
        if (!request.server_url.startsWith("https://")) throw { kind: "invalid_input", message: "server URL: must be https" };
        memberships = [member()];
        return { id: 1, federation_id: "notes" };
      }
      case "set_participation_policy":
        memberships = memberships.map((m) => ({ ...m, policy: args.policy as MembershipStatus["policy"] }));
        return 1;
      case "leave_federation":
        memberships = [];
        return { id: 1, federation_id: "notes" };
      case "start_federated_round":
        channel = args.onEvent as Channel<JobEvent<ParticipationSummary>>;
        return 5;
      case "cancel_job":
        return null;
      default:
        throw { kind: "internal", message: `unexpected ${cmd}` };
    }
  });
  return {
    calls,
    send: (e: JobEvent<ParticipationSummary>) => channel?.onmessage(e),
    started: () => channel !== null,
    addUpload: () => {
      uploads = [upload];
      memberships = memberships.map((m) => ({ ...m, rounds: [4], bytes_sent: upload.bytes_sent, epsilon_spent: 5.3, log_size: 12 }));
    },
  };
}

describe("Federation screen", () => {
  it("is off by default, says what would be shared, and joins with address, invite, certificate and settings", async () => {
    const fake = backend();
    render(<Federation active={true} />);
    const toggle = await screen.findByRole("switch");
    expect(toggle.getAttribute("aria-checked")).toBe("false");
    const explanation = document.getElementById("what-is-shared")?.textContent ?? "";
    expect(explanation).toContain("nothing leaves this device");
    expect(explanation).toMatch(/clipped.*noised.*masked/s);
    expect(explanation).toContain("only the sum");
    expect(explanation).toMatch(/Never shared:.*photos/s);
    expect(await screen.findByText("Nothing has been shared.")).toBeTruthy();

    fireEvent.click(toggle);
    expect(toggle.getAttribute("aria-checked")).toBe("true");
    const form = screen.getByRole("form", { name: "Join a federation" });
    fireEvent.input(within(form).getByLabelText("Server address"), { target: { value: "http://plain" } });
    fireEvent.input(within(form).getByLabelText("Invite"), { target: { value: "TOKEN" } });
    fireEvent.input(within(form).getByLabelText("Server certificate file"), { target: { value: "/tmp/cert.pem" } });
    fireEvent.submit(form);
    expect((await screen.findByRole("alert")).textContent).toContain("must be https");

    fireEvent.input(within(form).getByLabelText("Server address"), { target: { value: "https://127.0.0.1:8443" } });
    fireEvent.click(within(form).getByLabelText("Only when the computer is idle"));
    fireEvent.click(within(form).getByLabelText("Only between"));
    fireEvent.change(within(form).getByLabelText("From hour"), { target: { value: "21" } });
    fireEvent.submit(form);
    await screen.findByText(/Member of/);
    const joined = fake.calls.filter((c) => c.cmd === "join_federation").at(-1)?.args.request;
    expect(joined).toEqual({
      server_url: "https://127.0.0.1:8443",
      invite: "TOKEN",
      certificate_path: "/tmp/cert.pem",
      epsilon_budget: 8,
      policy: { require_power: true, require_idle: false, hours: [21, 6] },
    });
    expect(screen.getByRole("switch").getAttribute("aria-checked")).toBe("true");
    expect(document.getElementById("fed-eligible")?.textContent).toContain("waits: the machine is busy");
  });

  it("changes when to take part, runs a round with progress and lists the upload", async () => {
    const fake = backend([member()]);
    render(<Federation active={true} />);
    await screen.findByText(/Member of/);
    // Showing the screen loads its state once.
    await waitFor(() => expect(fake.calls.filter((c) => c.cmd === "federation_status").length).toBe(1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const card = document.getElementById("fed-status") as HTMLElement;
    const save = within(card).getByRole("button", { name: "Save" }) as HTMLButtonElement;
    expect(save.disabled).toBe(true);
    fireEvent.click(within(card).getByLabelText("Only when the computer is idle"));
    await waitFor(() => expect(save.disabled).toBe(false));
    fireEvent.click(save);
    await waitFor(() =>
      expect(fake.calls.find((c) => c.cmd === "set_participation_policy")?.args).toEqual({
        membership: 1,
        policy: { require_power: true, require_idle: false, hours: null },
      }),
    );
    await screen.findByText("Saved.");

    fireEvent.input(screen.getByLabelText("Base model (the federation's)"), { target: { value: "/m/stories260K.bin" } });
    fireEvent.input(screen.getByLabelText("Training steps"), { target: { value: "3" } });
    fireEvent.click(screen.getByRole("button", { name: "Take part now" }));
    await waitFor(() => expect(fake.started()).toBe(true));
    expect(fake.calls.find((c) => c.cmd === "start_federated_round")?.args.request).toEqual({
      membership: 1,
      model: "/m/stories260K.bin",
      steps: 3,
      seq_len: 128,
      rounds: 1,
    });
    fake.send({ event: "begin", task: "federated round 4", total: 6 });
    fake.send({ event: "advance", done: 2 });
    fake.send({ event: "note", message: "training from global version 3" });
    const bar = await screen.findByRole("progressbar", { name: "Federated round progress" });
    await waitFor(() => expect(bar.getAttribute("aria-valuenow")).toBe("2"));
    expect(screen.getByText("training from global version 3")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    await waitFor(() => expect(fake.calls.find((c) => c.cmd === "cancel_job")?.args).toEqual({ id: 5 }));

    fake.addUpload();
    fake.send({
      event: "done",
      result: {
        rounds: [{ round: 4, bytes_sent: 2_500_000, bytes_received: 40_000, epsilon: 5.3, global_version: 4, run_id: 9, upload_sha256: "ab".repeat(32), log_size: 12 }],
        epsilon_spent: 5.3,
        epsilon_budget: 8,
        delta: 1e-5,
        next_checkin_secs: null,
        cancelled: false,
      },
    });
    const result = await screen.findByText(/Round 4 done/);
    expect(result.textContent).toContain("2.5 MB");
    expect(result.textContent).toContain("verified in the server's log");
    const table = await screen.findByRole("table");
    expect(within(table).getByText("2.5 MB")).toBeTruthy();
    expect(within(table).getByText("4")).toBeTruthy();
    await waitFor(() => expect(document.getElementById("fed-rounds")?.textContent).toContain("1 round (4)"));
    expect(document.getElementById("fed-budget-spent")?.textContent).toContain("ε 5.30 of 8");
  });

  it("switching off asks first, then leaves and keeps the history", async () => {
    const fake = backend([member()]);
    fake.addUpload();
    render(<Federation active={true} />);
    await screen.findByText(/Member of/);
    fireEvent.click(screen.getByRole("switch"));
    const confirm = screen.getByRole("group", { name: "Switch federation off" });
    expect(confirm.textContent).toContain("stays listed");
    fireEvent.click(within(confirm).getByRole("button", { name: "Switch off" }));
    await waitFor(() => expect(screen.getByRole("switch").getAttribute("aria-checked")).toBe("false"));
    expect(fake.calls.find((c) => c.cmd === "leave_federation")?.args).toEqual({ membership: 1 });
    expect(screen.queryByText(/Member of/)).toBeNull();
    expect(screen.getByRole("table")).toBeTruthy();
  });
});
