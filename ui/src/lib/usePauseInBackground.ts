// On a phone, training does not go on while the app is in the background:
// the system may stop a background app at any moment (a run killed
// mid-step loses what it learned since its last checkpoint) and would
// drain the battery out of the person's sight. When the page is hidden a
// running job is paused (stopped at its next step, with a checkpoint);
// when the page is shown again it continues from that checkpoint. On
// computers nothing changes: a minimised window keeps training.
import { useCallback, useEffect, useRef } from "preact/hooks";
import { api } from "../api/ipc";
import type { Job } from "./useJob";
import { useLoad } from "./useJob";

export function usePauseInBackground<T>(job: Job<T>, resume: (result: T) => void, isPaused: (result: T) => boolean) {
  const platform = useLoad(() => api.appPlatform(), []);
  const mobile = platform.value?.mobile ?? false;
  // Whether this hook paused the job (and so should continue it).
  const pausedHere = useRef(false);
  const latest = useRef({ job, resume, isPaused });
  latest.current = { job, resume, isPaused };

  const resumeIfPaused = useCallback(() => {
    const { job, resume, isPaused } = latest.current;
    if (!pausedHere.current || document.hidden) return;
    const progress = job.progress;
    if (progress?.status === "done" && progress.result !== null && isPaused(progress.result)) {
      pausedHere.current = false;
      resume(progress.result);
    } else if (progress?.status === "failed" || (progress?.status === "done" && progress.result !== null)) {
      // It ended some other way before it could pause: nothing to continue.
      pausedHere.current = false;
    }
  }, []);

  useEffect(() => {
    if (!mobile) return;
    const onVisibility = () => {
      const { job } = latest.current;
      if (document.hidden && job.running) {
        pausedHere.current = true;
        void job.cancel();
      } else if (!document.hidden) {
        resumeIfPaused();
      }
    };
    document.addEventListener("visibilitychange", onVisibility);
    return () => document.removeEventListener("visibilitychange", onVisibility);
  }, [mobile, resumeIfPaused]);

  // The paused result may arrive after the page is shown again.
  const status = job.progress?.status;
  useEffect(() => {
    if (status !== "running") resumeIfPaused();
  }, [status, resumeIfPaused]);
}
