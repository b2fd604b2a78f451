// The live loss curve, drawn as SVG by hand (no chart library to ship):
// training loss as a line, held-out loss as dots.
import type { Point } from "../lib/progress";

const W = 480;
const H = 200;
const PAD = { left: 44, right: 12, top: 12, bottom: 28 };

/** Keeps at most `max` points, evenly spaced, always the last one. */
export function thin(points: Point[], max: number): Point[] {
  if (points.length <= max) return points;
  const step = points.length / max;
  const out: Point[] = [];
  for (let i = 0; i < max - 1; i++) out.push(points[Math.floor(i * step)] as Point);
  out.push(points[points.length - 1] as Point);
  return out;
}

export function LossChart({ loss, validation, totalSteps }: { loss: Point[]; validation: Point[]; totalSteps: number | null }) {
  const all = [...loss, ...validation];
  if (all.length === 0) {
    return <p class="muted">The loss curve appears with the first step.</p>;
  }
  const maxStep = Math.max(totalSteps ?? 0, ...all.map((p) => p[0]), 1);
  const values = all.map((p) => p[1]).filter(Number.isFinite);
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-6) {
    lo -= 0.5;
    hi += 0.5;
  }
  const x = (step: number) => PAD.left + (step / maxStep) * (W - PAD.left - PAD.right);
  const y = (value: number) => PAD.top + (1 - (value - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  const line = thin(loss, 400)
    .map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`)
    .join(" ");
  const last = loss[loss.length - 1];
  const lastValidation = validation[validation.length - 1];
  const summary =
    `Loss curve over ${last ? last[0] : 0} steps` +
    (last ? `, latest training loss ${last[1].toFixed(3)}` : "") +
    (lastValidation ? `, held-out loss ${lastValidation[1].toFixed(3)} at step ${lastValidation[0]}` : "");
  return (
    <figure class="chart">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={summary}>
        <line class="axis" x1={PAD.left} y1={H - PAD.bottom} x2={W - PAD.right} y2={H - PAD.bottom} />
        <line class="axis" x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={H - PAD.bottom} />
        <text class="tick" x={PAD.left - 6} y={PAD.top + 4} text-anchor="end">{hi.toFixed(2)}</text>
        <text class="tick" x={PAD.left - 6} y={H - PAD.bottom} text-anchor="end">{lo.toFixed(2)}</text>
        <text class="tick" x={W - PAD.right} y={H - 8} text-anchor="end">step {maxStep}</text>
        {line && <polyline class="loss-line" points={line} />}
        {validation.map((p) => (
          <circle class="validation-dot" cx={x(p[0])} cy={y(p[1])} r={4} key={p[0]} />
        ))}
      </svg>
      <figcaption class="legend">
        <span class="key loss">training loss</span> <span class="key validation">held-out loss</span>
      </figcaption>
    </figure>
  );
}
