import { describe, expect, it } from "vitest";
import type { JobEvent } from "../src/api/types";
import { thin } from "../src/components/LossChart";
import { eta, fileName, formatBytes, formatDuration, fraction, plural, reduce, startProgress } from "../src/lib/progress";

describe("job progress", () => {
  it("folds events: begin, advance, metrics, notes, done", () => {
    const events: JobEvent<string>[] = [
      { event: "metric", name: "validation_loss", step: 0, value: 6.2 },
      { event: "begin", task: "Training", total: 100 },
      { event: "advance", done: 10 },
      { event: "metric", name: "loss", step: 10, value: 5.5 },
      { event: "note", message: "a.jpg: corrupt" },
      { event: "advance", done: 20 },
      { event: "end" },
      { event: "done", result: "ok" },
    ];
    let state = startProgress<string>();
    events.forEach((e, i) => (state = reduce(state, e, 1000 * i)));
    expect(state.status).toBe("done");
    expect(state.result).toBe("ok");
    expect(state.done).toBe(20);
    expect(state.metrics.loss).toEqual([[10, 5.5]]);
    expect(state.metrics.validation_loss).toEqual([[0, 6.2]]);
    expect(state.notes).toEqual(["a.jpg: corrupt"]);
    expect(fraction(state)).toBe(0.2);
  });

  it("measures the ETA from the first step seen, so a resumed run is not too optimistic", () => {
    let state = startProgress<null>();
    state = reduce(state, { event: "begin", task: "Training", total: 100 }, 0);
    // Resumed at step 50: the first advance is the checkpoint's step.
    state = reduce(state, { event: "advance", done: 50 }, 0);
    expect(eta(state, 0)).toBeNull();
    state = reduce(state, { event: "advance", done: 60 }, 10_000);
    // 10 steps in 10 s, 40 left.
    expect(eta(state, 10_000)).toBeCloseTo(40);
    state = reduce(state, { event: "failed", error: { kind: "model", message: "diverged" } }, 11_000);
    expect(eta(state, 11_000)).toBeNull();
    expect(state.error?.kind).toBe("model");
  });

  it("formats durations, sizes and names for people", () => {
    expect(formatDuration(42)).toBe("42 s");
    expect(formatDuration(125)).toBe("2 min 5 s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3 h 2 min");
    expect(formatBytes(999)).toBe("999 B");
    expect(formatBytes(2_500_000)).toBe("2.5 MB");
    expect(fileName("/home/me/Pictures/rex.jpg")).toBe("rex.jpg");
    expect(fileName("C:\\notes\\a.txt")).toBe("a.txt");
    expect(plural(1, "label")).toBe("1 label");
    expect(plural(0, "photo")).toBe("0 photos");
  });

  it("thins long curves but keeps the last point", () => {
    const points = Array.from({ length: 1000 }, (_, i) => [i, i] as [number, number]);
    const thinned = thin(points, 100);
    expect(thinned).toHaveLength(100);
    expect(thinned.at(-1)).toEqual([999, 999]);
  });
});
