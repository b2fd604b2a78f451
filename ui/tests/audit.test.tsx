import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import { describe, expect, it } from "vitest";
import type { Adapter, AdapterLineage, AuditOutcome, PhotoTagger, Run, TaggerLineage } from "../src/api/types";
import { Audit } from "../src/screens/Audit";

function adapter(id: number): Adapter {
  return {
    id,
    name: `adapter-${id}`,
    run_id: id + 10,
    source: "trained",
    base_model: "stories260k",
    base_model_sha256: "5".repeat(64),
    sha256: `${id}`.repeat(64).slice(0, 64),
    rank: 8,
    alpha: 16,
    targets: ["q_proj", "v_proj"],
    path: `adapters/${id}`,
    created_at: "2026-01-01T10:00:00Z",
  };
}

function run(id: number): Run {
  return {
    id,
    kind: "text",
    status: "completed",
    base_model: "/models/stories260K.bin",
    base_model_sha256: "5".repeat(64),
    config: "{}",
    label: null,
    item_count: 60,
    token_count: 9000,
    device: "cpu",
    steps_done: 30,
    train_loss: 3,
    base_validation_loss: null,
    validation_loss: null,
    tokens_per_second: null,
    error: null,
    started_at: "2026-01-01T09:00:00Z",
    updated_at: "2026-01-01T09:10:00Z",
    items_root: "7".repeat(64),
    parent_sha256: null,
  };
}

function lineage(id: number, matches: boolean | null): AdapterLineage {
  const items = Array.from({ length: 60 }, (_, i) => ({
    sha256: i.toString(16).padStart(64, "0"),
    item: i === 0 ? null : ([i, `/notes/${i}.txt`] as [number, string]),
  }));
  return {
    adapter: adapter(id),
    run: run(id + 10),
    items_root: { root: "7".repeat(64), count: 60 },
    items,
    file_lineage: "9".repeat(64),
    lineage_matches: matches,
  };
}

function tagger(id: number): PhotoTagger {
  return {
    id,
    run_id: id + 20,
    model_sha256: "5".repeat(64),
    sha256: "e".repeat(64),
    labels: ["Rex", "receipts"],
    path: `taggers/run-${id + 20}.json`,
    created_at: "2026-01-02T10:00:00Z",
  };
}

/** Tagger 4's head is as its run wrote it; tagger 3's was changed since. */
function taggerLineage(id: number): TaggerLineage {
  return {
    tagger: tagger(id),
    run: { ...run(id + 20), kind: "photos", base_model: "efficientnet-lite0" },
    items_root: { root: "8".repeat(64), count: 12 },
    items: Array.from({ length: 12 }, (_, i) => ({
      sha256: i.toString(16).padStart(64, "a"),
      item: [i + 1, `/photos/${i}.jpg`] as [number, string],
    })),
    file_sha256: id === 4 ? "e".repeat(64) : "f".repeat(64),
    file_matches: id === 4,
  };
}

function backend(audits: AuditOutcome[], taggers: PhotoTagger[] = []) {
  const asked: number[] = [];
  let checks = 0;
  mockIPC((cmd, payload) => {
    if (cmd === "running_jobs") return [];
    const args = (payload ?? {}) as Record<string, unknown>;
    switch (cmd) {
      case "list_adapters":
        return [adapter(2), adapter(1)];
      case "adapter_lineage":
        asked.push(args.adapter as number);
        return lineage(args.adapter as number, args.adapter === 2);
      case "list_photo_taggers":
        return taggers;
      case "photo_tagger_lineage":
        return taggerLineage(args.tagger as number);
      case "audit_federations":
        checks += 1;
        return audits;
      default:
        throw { kind: "internal", message: `unexpected ${cmd}` };
    }
  });
  return { asked, checks: () => checks };
}

const verified: AuditOutcome = {
  membership: 1,
  federation_id: "notes",
  server_url: "https://127.0.0.1:8443",
  active: true,
  verified: true,
  checkpoints: 3,
  rounds: 2,
  commitments: 2,
  adapters: 2,
  log_size: 41,
  log_root: "c".repeat(64),
  parameters: 2,
  gossip_heads: 3,
  gossip_note: null,
  uploads_backed: [6, 6],
  contradicted_uploads: [],
  error: null,
};

describe("Audit screen", () => {
  it("shows the newest adapter's lineage, items to run to adapter, and flags a mismatching hash", async () => {
    const fake = backend([verified]);
    render(<Audit active={true} />);
    const check = await waitFor(() => {
      const element = document.getElementById("audit-lineage-check");
      expect(element?.getAttribute("data-status")).toBe("match");
      return element as HTMLElement;
    });
    expect(check.textContent).toContain("matches the run's record");
    expect(fake.asked).toEqual([2]);
    expect(screen.getByText(/60 items, committed to by Merkle root/)).toBeTruthy();
    expect(document.getElementById("audit-run")?.textContent).toContain("Run 12 (text, completed), 30 steps on stories260K.bin");
    expect(screen.getByText("no longer in the library")).toBeTruthy();
    expect(screen.getAllByText(/^\d+\.txt$/)).toHaveLength(49);
    fireEvent.click(screen.getByText("Show all 60"));
    expect(screen.getAllByText(/^\d+\.txt$/)).toHaveLength(59);

    fireEvent.change(screen.getByLabelText("Adapter"), { target: { value: "1" } });
    await waitFor(() => expect(document.getElementById("audit-lineage-check")?.getAttribute("data-status")).toBe("mismatch"));
    expect(document.getElementById("audit-lineage-check")?.textContent).toContain("does NOT match");
  });

  it("traces the newest photo tagger to its photos and flags a changed head file", async () => {
    backend([verified], [tagger(4), tagger(3)]);
    render(<Audit active={true} />);
    await waitFor(() => expect(document.getElementById("audit-tagger-check")?.getAttribute("data-status")).toBe("match"));
    const view = document.getElementById("audit-tagger-lineage");
    expect(view?.textContent).toContain("12 photos, committed to by Merkle root");
    expect(view?.textContent).toContain("Run 24 (completed) on efficientnet-lite0");
    expect(view?.textContent).toContain("4: Rex, receipts");
    expect(document.getElementById("audit-tagger-check")?.textContent).toContain("the one its run wrote");

    fireEvent.change(screen.getByLabelText("Tagger"), { target: { value: "3" } });
    await waitFor(() => expect(document.getElementById("audit-tagger-check")?.getAttribute("data-status")).toBe("mismatch"));
    expect(document.getElementById("audit-tagger-check")?.textContent).toContain("has changed since");
  });

  it("re-verifies every federation log and says when something fails", async () => {
    const fake = backend([
      verified,
      {
        ...verified,
        membership: 2,
        federation_id: "photos",
        active: false,
        verified: false,
        error: "UPLOAD CONTRADICTED: the log dropped it",
        log_size: null,
        uploads_backed: [5, 6],
        contradicted_uploads: ["device dev_b in round 3"],
      },
    ]);
    render(<Audit active={true} />);
    await waitFor(() => expect(document.getElementById("audit-logs")?.children.length).toBe(2));
    const [ok, failed] = Array.from(document.getElementById("audit-logs")?.children ?? []);
    expect(ok?.getAttribute("data-verified")).toBe("true");
    expect(ok?.textContent).toContain("3 signed log heads, 2 rounds (2 uploads of this device, 2 published adapters)");
    expect(ok?.textContent).toContain("41 entries");
    expect(ok?.textContent).toContain("6 of 6 uploads in the log are backed by their device's signed word");
    expect(failed?.getAttribute("data-verified")).toBe("false");
    expect(failed?.textContent).toContain("(left)");
    expect(failed?.textContent).toContain("FAILED: UPLOAD CONTRADICTED: the log dropped it");
    expect(failed?.textContent).toContain("the log dropped or swapped the upload of device dev_b in round 3");
    fireEvent.click(screen.getByRole("button", { name: "Check again" }));
    await waitFor(() => expect(fake.checks()).toBe(2));
  });

  it("says there is nothing to check before joining a federation", async () => {
    backend([]);
    render(<Audit active={true} />);
    expect((await screen.findByText(/never joined a federation/)).textContent).toContain("nothing was shared");
  });
});
