import { fireEvent, render, screen, waitFor } from "@testing-library/preact";
import { mockIPC } from "@tauri-apps/api/mocks";
import type { Channel } from "@tauri-apps/api/core";
import { describe, expect, it } from "vitest";
import type { ImportSummary, Item, JobEvent } from "../src/api/types";
import { Library } from "../src/screens/Library";
import { photo, text } from "./fixtures";

/** A fake backend: a library of items, recording every call. */
function backend(items: Item[], mobile = false) {
  const calls: { cmd: string; args: Record<string, unknown> }[] = [];
  let importChannel: Channel<JobEvent<ImportSummary>> | null = null;
  mockIPC((cmd, payload) => {
    if (cmd === "running_jobs") return [];
    if (cmd === "app_platform") return { mobile };
    const args = (payload ?? {}) as Record<string, unknown>;
    calls.push({ cmd, args });
    switch (cmd) {
      case "library_info":
        return { path: "/tmp/library", stats: { photos: 2, texts: 1, photo_bytes: 2000, text_bytes: 42, text_chars: 42, labels: 0, labelled_items: 0, database_bytes: 0, thumbnail_bytes: 0 } };
      case "list_labels":
        return [];
      case "list_items": {
        const query = (args.query ?? {}) as { kind?: string; label?: string; search?: string };
        return items.filter((i) => !query.search || i.path.includes(query.search));
      }
      case "add_label": {
        const item = items.find((i) => i.id === args.id) as Item;
        item.labels = [...item.labels, args.name as string];
        return item;
      }
      case "plugin:dialog|open":
        return mobile ? ["file:///var/mobile/Media/DCIM/rex.jpg", "file:///var/mobile/notes.txt"] : ["/home/me/Pictures"];
      case "import_folders":
        importChannel = args.onEvent as Channel<JobEvent<ImportSummary>>;
        return 1;
      default:
        throw { kind: "internal", message: `unexpected ${cmd}` };
    }
  });
  return { calls, channel: () => importChannel };
}

describe("Library screen", () => {
  it("shows photos with thumbnails from the app's scheme, and texts", async () => {
    backend([photo(1, "rex.png"), photo(2, "garden.png"), text(3, "note.txt")]);
    render(<Library active={true} />);
    const grid = await screen.findByRole("list", { name: "Photos" });
    const images = grid.querySelectorAll("img");
    expect(images).toHaveLength(2);
    expect(images[0]?.getAttribute("src")).toMatch(/^hearth-thumb:\/\/localhost\/a1%2Fa10+\.jpg$/);
    expect(await screen.findByText("note.txt")).toBeTruthy();
    expect(screen.getByText(/2 photos/)).toBeTruthy();
  });

  it("adds a label to the selected photo", async () => {
    const { calls } = backend([photo(1, "rex.png")]);
    render(<Library active={true} />);
    fireEvent.click(await screen.findByRole("button", { name: "rex.png" }));
    const input = await screen.findByPlaceholderText(/Add a label/);
    fireEvent.input(input, { target: { value: "Rex" } });
    fireEvent.click(screen.getByRole("button", { name: "Add label" }));
    await waitFor(() => expect(calls.some((c) => c.cmd === "add_label")).toBe(true));
    expect(calls.find((c) => c.cmd === "add_label")?.args).toEqual({ id: 1, name: "Rex" });
    expect(await screen.findByRole("button", { name: "Remove label Rex" })).toBeTruthy();
  });

  it("imports a typed folder and reports progress and the result", async () => {
    const fake = backend([]);
    render(<Library active={true} />);
    fireEvent.input(screen.getByLabelText("Folder path"), { target: { value: "/home/me/Pictures" } });
    fireEvent.click(screen.getByRole("button", { name: "Import" }));
    await waitFor(() => expect(fake.channel()).not.toBeNull());
    expect(fake.calls.find((c) => c.cmd === "import_folders")?.args.request).toEqual({ paths: ["/home/me/Pictures"] });
    const send = (event: JobEvent<ImportSummary>) => fake.channel()?.onmessage(event);
    send({ event: "begin", task: "Importing", total: 4 });
    send({ event: "advance", done: 2 });
    const bar = await screen.findByRole("progressbar", { name: "Import progress" });
    await waitFor(() => expect(bar.getAttribute("aria-valuenow")).toBe("2"));
    send({ event: "done", result: { imported: 3, already_present: 0, moved: 0, skipped: 0, failed: 1, cancelled: false, problems: [{ path: "/home/me/Pictures/bad.jpg", outcome: "failed", reason: "corrupt" }] } });
    expect((await screen.findByRole("status")).textContent).toContain("3 new");
    expect(screen.getByText(/corrupt/)).toBeTruthy();
  });

  it("filters by search text", async () => {
    const { calls } = backend([photo(1, "rex.png"), photo(2, "garden.png")]);
    render(<Library active={true} />);
    await screen.findByRole("list", { name: "Photos" });
    fireEvent.input(screen.getByRole("searchbox"), { target: { value: "rex" } });
    await waitFor(() =>
      expect(calls.some((c) => c.cmd === "list_items" && (c.args.query as { search?: string }).search === "rex")).toBe(true),
    );
    await waitFor(() => expect(screen.getByRole("list", { name: "Photos" }).querySelectorAll("img")).toHaveLength(1));
  });

  it("on a phone, picks photos and notes as files (there is no folder picker)", async () => {
    const fake = backend([], true);
    render(<Library active={true} />);
    fireEvent.click(await screen.findByRole("button", { name: "Choose photos and notes…" }));
    await waitFor(() => expect(fake.channel()).not.toBeNull());
    const dialog = fake.calls.find((c) => c.cmd === "plugin:dialog|open")?.args.options as Record<string, unknown>;
    expect(dialog.directory).toBe(false);
    expect(dialog.multiple).toBe(true);
    const request = fake.calls.find((c) => c.cmd === "import_folders")?.args.request as { paths: string[] };
    expect(request.paths).toEqual(["file:///var/mobile/Media/DCIM/rex.jpg", "file:///var/mobile/notes.txt"]);
  });
});
