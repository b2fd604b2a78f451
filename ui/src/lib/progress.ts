// A job's progress as the screens show it, folded from its JobEvents by a
// pure reducer (unit-tested without any IPC), and the ETA estimate.
import type { AppError, JobEvent } from "../api/types";

export type Point = [step: number, value: number];

export interface JobProgress<T> {
  status: "running" | "done" | "failed";
  task: string | null;
  total: number | null;
  done: number;
  /** Where the current task's rate is measured from: a resumed training
   * begins at its checkpoint's step, not at zero. */
  base: { done: number; at: number } | null;
  metrics: Record<string, Point[]>;
  notes: string[];
  result: T | null;
  error: AppError | null;
}

export function startProgress<T>(): JobProgress<T> {
  return {
    status: "running",
    task: null,
    total: null,
    done: 0,
    base: null,
    metrics: {},
    notes: [],
    result: null,
    error: null,
  };
}

/** Most notes kept (an import of a messy folder can report thousands). */
const MAX_NOTES = 50;

export function reduce<T>(state: JobProgress<T>, event: JobEvent<T>, now: number): JobProgress<T> {
  switch (event.event) {
    case "begin":
      return { ...state, task: event.task, total: event.total, done: 0, base: null };
    case "advance":
      return {
        ...state,
        done: event.done,
        base: state.base ?? { done: event.done, at: now },
      };
    case "metric": {
      const series = state.metrics[event.name] ?? [];
      return {
        ...state,
        metrics: { ...state.metrics, [event.name]: [...series, [event.step, event.value]] },
      };
    }
    case "note":
      return { ...state, notes: [...state.notes, event.message].slice(-MAX_NOTES) };
    case "end":
      return state;
    case "done":
      return { ...state, status: "done", result: event.result };
    case "failed":
      return { ...state, status: "failed", error: event.error };
  }
}

/** Seconds left in the current task at `now`, when it can be told. */
export function eta(state: JobProgress<unknown>, now: number): number | null {
  if (state.status !== "running" || state.total === null || state.base === null) return null;
  const elapsed = (now - state.base.at) / 1000;
  const progressed = state.done - state.base.done;
  if (elapsed <= 0.5 || progressed <= 0) return null;
  return Math.max(0, ((state.total - state.done) * elapsed) / progressed);
}

/** A fraction in [0, 1] when the total is known. */
export function fraction(state: JobProgress<unknown>): number | null {
  if (!state.total) return null;
  return Math.min(1, Math.max(0, state.done / state.total));
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** The last name in a path, for people. */
export function fileName(path: string): string {
  const parts = path.split(/[\\/]/);
  return parts[parts.length - 1] || path;
}

/** `1 photo`, `2 photos`. */
export function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
