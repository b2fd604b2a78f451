// An item's details, as the Library screen shows them (and the Ask screen,
// for the items an answer came from): the photo or the note's text, its
// size and type, and its labels, which can be added and removed here.
import { useEffect, useState } from "preact/hooks";
import { api, thumbnailUrl, toAppError } from "../api/ipc";
import type { AppError, Item } from "../api/types";
import { fileName, formatBytes } from "../lib/progress";
import { ErrorNote } from "./ErrorNote";

export function ItemDetails({
  item,
  onChanged,
  onClose,
  idPrefix = "",
}: {
  item: Item;
  onChanged: () => void;
  onClose: () => void;
  /** Prefixes the form's element ids, for a second panel on another screen. */
  idPrefix?: string;
}) {
  const [name, setName] = useState("");
  const [error, setError] = useState<AppError | null>(null);
  const [text, setText] = useState<string | null>(null);
  useEffect(() => {
    setText(null);
    if (item.kind === "text") {
      api.itemText(item.id).then(setText, (e) => setError(toAppError(e)));
    }
  }, [item.id, item.kind]);

  const change = async (work: () => Promise<unknown>) => {
    try {
      await work();
      setError(null);
      onChanged();
    } catch (e) {
      setError(toAppError(e));
    }
  };
  const url = thumbnailUrl(item);
  return (
    <aside class="card details" aria-label={`Details of ${fileName(item.path)}`}>
      <div class="row spread">
        <h3>{fileName(item.path)}</h3>
        <button onClick={onClose} aria-label="Close details">
          ×
        </button>
      </div>
      {url && <img class="preview" src={url} alt={fileName(item.path)} />}
      <p class="muted">
        {item.kind === "photo" && item.width ? `${item.width}×${item.height} · ` : ""}
        {formatBytes(item.size_bytes)} · {item.media_type}
      </p>
      {text !== null && <pre class="text-preview">{text.slice(0, 2000)}</pre>}
      <h4>Labels</h4>
      <ul class="chips" aria-label="Labels">
        {item.labels.map((l) => (
          <li class="chip" key={l}>
            {l}
            <button aria-label={`Remove label ${l}`} onClick={() => void change(() => api.removeLabel(item.id, l))}>
              ×
            </button>
          </li>
        ))}
        {item.labels.length === 0 && <li class="muted">No labels yet.</li>}
      </ul>
      <form
        class="row"
        onSubmit={(e) => {
          e.preventDefault();
          const label = name.trim();
          if (!label) return;
          void change(() => api.addLabel(item.id, label)).then(() => setName(""));
        }}
      >
        <label class="grow">
          <span class="visually-hidden">New label</span>
          <input
            id={`${idPrefix}new-label`}
            type="text"
            placeholder="Add a label, e.g. Rex"
            value={name}
            maxLength={100}
            onInput={(e) => setName(e.currentTarget.value)}
          />
        </label>
        <button id={`${idPrefix}add-label`} type="submit" disabled={!name.trim()}>
          Add label
        </button>
      </form>
      <ErrorNote error={error} />
    </aside>
  );
}
