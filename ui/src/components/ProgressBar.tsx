// A labelled progress bar with the task, the count and the time left.
import type { JobProgress } from "../lib/progress";
import { eta, formatDuration, fraction } from "../lib/progress";
import { useTicker } from "../lib/useJob";

export function ProgressBar<T>({ progress, label }: { progress: JobProgress<T>; label: string }) {
  const now = useTicker(progress.status === "running");
  const part = fraction(progress);
  const left = eta(progress, now);
  const counted = progress.total !== null ? `${progress.done} / ${progress.total}` : `${progress.done}`;
  const status =
    progress.status === "done"
      ? "done"
      : progress.status === "failed"
        ? "failed"
        : `${progress.task ?? "Starting"} ${counted}${left !== null ? `, about ${formatDuration(left)} left` : ""}`;
  return (
    <div class="progress" data-status={progress.status}>
      <div
        class="progress-track"
        role="progressbar"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={progress.total ?? undefined}
        aria-valuenow={progress.total !== null ? progress.done : undefined}
        aria-valuetext={status}
      >
        <div
          class={part === null && progress.status === "running" ? "progress-fill indeterminate" : "progress-fill"}
          style={{ width: `${progress.status === "done" ? 100 : Math.round((part ?? 0) * 100)}%` }}
        />
      </div>
      <p class="progress-text" aria-live="polite">
        {status}
      </p>
    </div>
  );
}
