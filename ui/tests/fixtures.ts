import type { Item, RequestDefaults, Target } from "../src/api/types";
// Written by the app's Rust tests from the library's defaults (a stale
// copy fails them), so these tests see the real defaults.
import defaults from "./request-defaults.json";

// JSON imports type string unions as plain strings: the LoRA targets are
// checked against the generated union rather than cast.
const TARGETS: Record<Target, true> = {
  q_proj: true,
  k_proj: true,
  v_proj: true,
  o_proj: true,
  gate_proj: true,
  up_proj: true,
  down_proj: true,
};
function target(name: string): Target {
  if (!(name in TARGETS)) throw new Error(`request-defaults.json: unknown LoRA target ${name}`);
  return name as Target;
}

export const requestDefaults: RequestDefaults = {
  ...defaults,
  text_training: { ...defaults.text_training, targets: defaults.text_training.targets.map(target) },
};

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
