// An error, said plainly, with a hint for the kinds a person can act on.
import type { AppError } from "../api/types";

const HINTS: Partial<Record<AppError["kind"], string>> = {
  no_data: "Add some data in the Library first.",
  model_missing: "Fetch the model with scripts/fetch-models.sh, or name a model file.",
  busy: "Wait for the running job, or cancel it.",
  federation: "Check the server address and your connection, or ask the federation's operator.",
  privacy_budget: "Your budget is spent: this device takes no more part in this federation.",
};

export function ErrorNote({ error }: { error: AppError | null }) {
  if (!error) return null;
  return (
    <p class="error" role="alert">
      {error.message}
      {HINTS[error.kind] ? ` ${HINTS[error.kind]}` : ""}
    </p>
  );
}
