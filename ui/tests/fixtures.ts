import type { Item, RequestDefaults } from "../src/api/types";
// Written by the app's Rust tests from the library's defaults (a stale
// copy fails them), so these tests see the real defaults.
import defaults from "./request-defaults.json";

export const requestDefaults: RequestDefaults = defaults;

export function photo(id: number, name: string, labels: string[] = []): Item {
  const sha = `${id.toString(16).padStart(2, "a")}${"0".repeat(62)}`;
  return {
    id,
    kind: "photo",
    sha256: sha,
    path: `/photos/${name}`,
    size_bytes: 1000,
    media_type: "image/png",
    width: 512,
    height: 512,
    captured_at: null,
    thumbnail: `thumbnails/${sha.slice(0, 2)}/${sha}.jpg`,
    text_chars: null,
    imported_at: "2025-01-01T00:00:00Z",
    labels,
  };
}

export function text(id: number, name: string, labels: string[] = []): Item {
  return { ...photo(id, name, labels), kind: "text", path: `/notes/${name}`, thumbnail: null, width: null, height: null, media_type: "text/plain", text_chars: 42 };
}
