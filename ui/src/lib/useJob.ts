// A hook that runs one job at a time for a screen: start it (the start
// function gets the event handler to pass to the command), follow its
// events, cancel it.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, toAppError } from "../api/ipc";
import type { AppError, JobEvent, JobId, JobKind } from "../api/types";
import { type JobProgress, reduce, startProgress } from "./progress";

export interface Job<T> {
  progress: JobProgress<T> | null;
  jobId: JobId | null;
  running: boolean;
  start: (launch: (onEvent: (e: JobEvent<T>) => void) => Promise<JobId>) => Promise<void>;
  cancel: () => Promise<void>;
  reset: () => void;
}

/**
 * Runs one job at a time. With `kind`, a job of that kind that is already
 * running when the screen mounts (the page reloaded while it ran) is
 * followed again: its events so far are replayed, then the rest arrive.
 */
export function useJob<T>(onFinished?: (progress: JobProgress<T>) => void, kind?: JobKind): Job<T> {
  const [progress, setProgress] = useState<JobProgress<T> | null>(null);
  const [jobId, setJobIdState] = useState<JobId | null>(null);
  // The id as of now, for a cancel that comes before the next render.
  const currentId = useRef<JobId | null>(null);
  const setJobId = useCallback((id: JobId | null) => {
    currentId.current = id;
    setJobIdState(id);
  }, []);
  const finished = useRef(onFinished);
  finished.current = onFinished;

  /** A fresh progress state and the handler that folds events into it. */
  const follow = useCallback(() => {
    let state = startProgress<T>();
    setProgress(state);
    return (event: JobEvent<T>) => {
      state = reduce(state, event, Date.now());
      setProgress(state);
      if (state.status !== "running") {
        setJobId(null);
        finished.current?.(state);
      }
    };
  }, [setJobId]);

  // A cancel asked for before the start call answered with the job's id.
  const cancelOnStart = useRef(false);

  const start = useCallback(
    async (launch: (onEvent: (e: JobEvent<T>) => void) => Promise<JobId>) => {
      const onEvent = follow();
      cancelOnStart.current = false;
      try {
        const id = await launch(onEvent);
        setJobId(id);
        if (cancelOnStart.current) {
          cancelOnStart.current = false;
          await api.cancelJob(id).catch(() => undefined);
        }
      } catch (error) {
        onEvent({ event: "failed", error: toAppError(error) });
      }
    },
    [follow, setJobId],
  );

  useEffect(() => {
    if (kind === undefined) return;
    let mounted = true;
    void (async () => {
      const running = (await api.runningJobs()).find((job) => job.kind === kind);
      if (!running || !mounted) return;
      const onEvent = follow();
      setJobId(running.id);
      try {
        await api.attachJob<T>(running.id, onEvent);
      } catch (error) {
        const appError = toAppError(error);
        // It ended between the two calls: there is nothing to follow.
        if (appError.kind === "not_found") {
          setProgress(null);
          setJobId(null);
        } else {
          onEvent({ event: "failed", error: appError });
        }
      }
    })().catch((error: unknown) => follow()({ event: "failed", error: toAppError(error) }));
    return () => {
      mounted = false;
    };
  }, [kind, follow, setJobId]);

  const cancel = useCallback(async () => {
    const jobId = currentId.current;
    if (jobId === null) {
      cancelOnStart.current = true;
      return;
    }
    try {
      await api.cancelJob(jobId);
    } catch (e) {
      const error = toAppError(e);
      // A job that just ended has nothing left to cancel; anything else is
      // shown with the job.
      if (error.kind !== "not_found") setProgress((p) => p && { ...p, error });
    }
  }, []);

  const reset = useCallback(() => setProgress(null), []);

  return { progress, jobId, running: progress?.status === "running", start, cancel, reset };
}

/** Re-renders every `ms` while `active`, for clocks such as the ETA. */
export function useTicker(active: boolean, ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [active, ms]);
  return now;
}

/**
 * Runs `load` and keeps its result, error and a reload function. It loads
 * again when `deps` change and each time `active` turns true (a screen
 * being shown), and not while `active` is false.
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[], active = true) {
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  // The latest `load`, so `reload` changes only with `deps` (the caller's
  // statement of what `load` reads), not with every render's new closure.
  const latest = useRef(load);
  latest.current = load;
  const reload = useCallback(async () => {
    try {
      setValue(await latest.current());
      setError(null);
    } catch (e) {
      setError(toAppError(e));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps -- `deps` is the caller's list
  }, deps);
  useEffect(() => {
    if (active) void reload();
  }, [reload, active]);
  return { value, error, reload };
}
