// The Federation screen: a switch that is off by default, with plain words
// about exactly what is shared when it is on; joining (server address,
// invite, the server's certificate); the membership's status (rounds,
// privacy budget spent); when the device may take part (power, idle,
// hours: stored in the library, where `hearth fed run` reads them); taking
// part in a round as a job; every upload with its size; switching off
// (leaving).
import { open } from "@tauri-apps/plugin-dialog";
import { useEffect, useState } from "preact/hooks";
import { api, toAppError } from "../api/ipc";
import type {
  AppError,
  FederationOverview,
  MembershipStatus,
  ParticipationPolicy,
  ParticipationSummary,
  UploadRecord,
} from "../api/types";
import { ErrorNote } from "../components/ErrorNote";
import { ProgressBar } from "../components/ProgressBar";
import { formatBytes, plural } from "../lib/progress";
import { useJob, useLoad } from "../lib/useJob";


export function Federation({ active }: { active: boolean }) {
  const overview = useLoad(() => api.federationStatus(), [], active);
  const history = useLoad(() => api.federationHistory(), [], active);
  const reload = () => {
    void overview.reload();
    void history.reload();
  };
  const memberships = overview.value?.memberships ?? [];
  const [joining, setJoining] = useState(false);
  const [confirmOff, setConfirmOff] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  const member = memberships.length > 0;
  const on = member || joining;

  const toggle = () => {
    setError(null);
    if (member) setConfirmOff((c) => !c);
    else setJoining((j) => !j);
  };
  const switchOff = async () => {
    setError(null);
    try {
      for (const membership of memberships) await api.leaveFederation(membership.id);
      setConfirmOff(false);
    } catch (e) {
      setError(toAppError(e));
    }
    reload();
  };

  return (
    <section class="screen federation" aria-labelledby="federation-title">
      <h2 id="federation-title">Federation</h2>
      <div class="card" aria-labelledby="federation-switch-label">
        <div class="row spread">
          <h3 id="federation-switch-label">Help improve the shared model</h3>
          <button
            id="federation-switch"
            type="button"
            role="switch"
            class="switch"
            aria-checked={on}
            aria-labelledby="federation-switch-label"
            onClick={toggle}
          >
            <span class="switch-knob" aria-hidden="true" />
            <span>{on ? "On" : "Off"}</span>
          </button>
        </div>
        <WhatIsShared />
        {confirmOff && member && (
          <div class="row confirm" role="group" aria-label="Switch federation off">
            <span class="grow">
              Switching off leaves {memberships.map((m) => `“${m.federation_id}”`).join(", ")}: this device takes
              part in no more rounds. What it shared stays listed below.
            </span>
            <button id="fed-leave-confirm" onClick={() => void switchOff()}>
              Switch off
            </button>
            <button onClick={() => setConfirmOff(false)}>Keep on</button>
          </div>
        )}
        <ErrorNote error={error ?? overview.error} />
        {joining && !member && (
          <JoinForm
            onJoined={() => {
              setJoining(false);
              reload();
            }}
            onCancel={() => setJoining(false)}
          />
        )}
      </div>
      {memberships.map((membership) => (
        <MembershipCard key={membership.id} membership={membership} overview={overview.value} onChanged={reload} />
      ))}
      <History uploads={history.value ?? []} error={history.error} />
    </section>
  );
}

function WhatIsShared() {
  return (
    <div class="explain" id="what-is-shared">
      <p>
        <strong>Off unless you switch it on.</strong> While it is off, nothing leaves this device.
      </p>
      <p>
        When it is on, this device takes part in rounds only when you allow it (on power, when idle, in your hours).
        In a round it learns from your notes here, then sends <strong>one thing</strong>: a change to the shared
        adapter (a small add-on to the text model). Before it leaves, the change is <em>clipped</em> (its size is
        capped), <em>noised</em> (random noise hides what any one person wrote) and <em>masked</em> (encrypted so
        that the server can only add it to the other devices' changes). The server sees only the sum of many
        devices' changes, never yours alone.
      </p>
      <p>
        <strong>Never shared:</strong> your photos, your notes and texts, your labels, your own adapters. Every
        upload is listed below with its size, and checked against the server's public log.
      </p>
    </div>
  );
}

const HOURS = Array.from({ length: 24 }, (_, h) => h);

/** When the device may take part; the same fields when joining and after. */
export function PolicyFields({
  policy,
  onChange,
  prefix,
}: {
  policy: ParticipationPolicy;
  onChange: (policy: ParticipationPolicy) => void;
  prefix: string;
}) {
  const hours = policy.hours;
  return (
    <fieldset class="policy">
      <legend>When to take part</legend>
      <label class="inline">
        <input
          id={`${prefix}-power`}
          type="checkbox"
          checked={policy.require_power}
          onChange={(e) => onChange({ ...policy, require_power: e.currentTarget.checked })}
        />
        Only when plugged in
      </label>
      <label class="inline">
        <input
          id={`${prefix}-idle`}
          type="checkbox"
          checked={policy.require_idle}
          onChange={(e) => onChange({ ...policy, require_idle: e.currentTarget.checked })}
        />
        Only when the computer is idle
      </label>
      <div class="row">
        <label class="inline">
          <input
            id={`${prefix}-hours`}
            type="checkbox"
            checked={hours !== null}
            onChange={(e) => onChange({ ...policy, hours: e.currentTarget.checked ? [22, 6] : null })}
          />
          Only between
        </label>
        <select
          id={`${prefix}-from`}
          aria-label="From hour"
          disabled={hours === null}
          value={hours?.[0] ?? 22}
          onChange={(e) => hours && onChange({ ...policy, hours: [Number(e.currentTarget.value), hours[1]] })}
        >
          {HOURS.map((h) => (
            <option key={h} value={h}>{`${h}:00`}</option>
          ))}
        </select>
        <span aria-hidden="true">and</span>
        <select
          id={`${prefix}-to`}
          aria-label="To hour"
          disabled={hours === null}
          value={hours?.[1] ?? 6}
          onChange={(e) => hours && onChange({ ...policy, hours: [hours[0], Number(e.currentTarget.value)] })}
        >
          {HOURS.map((h) => (
            <option key={h} value={h}>{`${h}:00`}</option>
          ))}
        </select>
        <span class="muted">(local time)</span>
      </div>
    </fieldset>
  );
}

function JoinForm({ onJoined, onCancel }: { onJoined: () => void; onCancel: () => void }) {
  const [url, setUrl] = useState("");
  const [invite, setInvite] = useState("");
  const [certificate, setCertificate] = useState("");
  // The budget and policy start as the library's defaults
  // (`request_defaults`); `null` until the person changes them.
  const defaults = useLoad(() => api.requestDefaults(), []);
  const [budgetEdit, setBudget] = useState<number | null>(null);
  const [policyEdit, setPolicy] = useState<ParticipationPolicy | null>(null);
  const budget = budgetEdit ?? defaults.value?.join_federation.epsilon_budget;
  const policy = policyEdit ?? defaults.value?.join_federation.policy;
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);

  const choose = async () => {
    try {
      const picked = await open({ multiple: false, title: "The server's certificate (from its operator)" });
      if (typeof picked === "string") setCertificate(picked);
    } catch (e) {
      setError(toAppError(e));
    }
  };
  const join = async () => {
    setBusy(true);
    setError(null);
    try {
      await api.joinFederation({
        server_url: url,
        invite,
        certificate_path: certificate,
        ...(budget !== undefined && { epsilon_budget: budget }),
        ...(policy !== undefined && { policy }),
      });
      onJoined();
    } catch (e) {
      setError(toAppError(e));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form
      class="form-grid join"
      aria-label="Join a federation"
      onSubmit={(e) => {
        e.preventDefault();
        void join();
      }}
    >
      <p class="span muted">
        The federation's operator gives you its address, an invite and its certificate file. Joining shares
        nothing yet: it only introduces this device.
      </p>
      <label>
        Server address
        <input id="fed-url" type="url" placeholder="https://example.org:8443" value={url} onInput={(e) => setUrl(e.currentTarget.value)} required />
      </label>
      <label>
        Invite
        <input id="fed-invite" type="text" value={invite} onInput={(e) => setInvite(e.currentTarget.value)} required autocomplete="off" />
      </label>
      <div class="cert-field">
        <label>
          Server certificate file
          <input
            id="fed-cert"
            type="text"
            placeholder="/path/to/certificate.pem"
            value={certificate}
            onInput={(e) => setCertificate(e.currentTarget.value)}
            required
          />
        </label>
        <button type="button" onClick={() => void choose()}>
          Choose…
        </button>
      </div>
      <label>
        Privacy budget (ε, at δ = 10⁻⁵)
        <input
          id="fed-budget"
          type="number"
          min={0.1}
          step="any"
          value={budget ?? ""}
          onInput={(e) => {
            const v = Number.parseFloat(e.currentTarget.value);
            if (v > 0) setBudget(v);
          }}
        />
      </label>
      <p class="span muted">
        Smaller is more private. Each round spends some of it; this device stops taking part before it would
        spend more.
      </p>
      <div class="span">
        {policy && <PolicyFields policy={policy} onChange={setPolicy} prefix="join-policy" />}
      </div>
      <div class="row span">
        <button id="fed-join" class="primary" type="submit" disabled={busy}>
          {busy ? "Joining…" : "Join"}
        </button>
        <button type="button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
      <div class="span">
        <ErrorNote error={error} />
      </div>
    </form>
  );
}

function describePolicy(policy: ParticipationPolicy): string {
  const parts = [];
  if (policy.require_power) parts.push("when plugged in");
  if (policy.require_idle) parts.push("when idle");
  parts.push(policy.hours ? `between ${policy.hours[0]}:00 and ${policy.hours[1]}:00` : "at any hour");
  return parts.join(", ");
}

function MembershipCard({
  membership,
  overview,
  onChanged,
}: {
  membership: MembershipStatus;
  overview: FederationOverview | null;
  onChanged: () => void;
}) {
  const [policy, setPolicy] = useState(membership.policy);
  const [saved, setSaved] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  // Reset to what is stored only when that changes (every reload brings a
  // new object; unsaved edits must survive it).
  const stored = JSON.stringify(membership.policy);
  useEffect(() => setPolicy(JSON.parse(stored) as ParticipationPolicy), [stored]);
  const changed = JSON.stringify(policy) !== JSON.stringify(membership.policy);
  const spent = membership.epsilon_spent;
  const share = Math.min(1, spent / membership.epsilon_budget);

  const save = async () => {
    setError(null);
    try {
      await api.setParticipationPolicy(membership.id, policy);
      setSaved(true);
      onChanged();
    } catch (e) {
      setError(toAppError(e));
    }
  };
  const conditions = overview?.conditions;
  return (
    <div class="card membership" id="fed-status" aria-labelledby={`membership-${membership.id}`}>
      <h3 id={`membership-${membership.id}`}>
        Member of “{membership.federation_id}”
      </h3>
      <dl class="facts">
        <dt>Server</dt>
        <dd>
          <code>{membership.server_url}</code>
        </dd>
        <dt>This device</dt>
        <dd>
          <code>{membership.device_id}</code>, joined {membership.joined_at.replace("T", " ").slice(0, 16)}
        </dd>
        <dt>Rounds taken part in</dt>
        <dd id="fed-rounds">
          {membership.rounds.length === 0
            ? "none yet"
            : `${plural(membership.rounds.length, "round")} (${membership.rounds.join(", ")}), ${formatBytes(membership.bytes_sent)} sent`}
        </dd>
        <dt>Privacy spent</dt>
        <dd>
          <span id="fed-budget-spent">
            ε {spent.toFixed(2)} of {membership.epsilon_budget} at δ = {membership.delta}
          </span>
          <meter
            min={0}
            max={1}
            value={share}
            low={0.5}
            high={0.85}
            optimum={0}
            aria-label={`Privacy budget spent: ${Math.round(share * 100)} percent`}
          />
        </dd>
        <dt>Server's log</dt>
        <dd>{membership.log_size > 0 ? `${membership.log_size} entries verified by this device` : "nothing to verify yet"}</dd>
        <dt>Takes part</dt>
        <dd>{describePolicy(membership.policy)}</dd>
        <dt>Right now</dt>
        <dd id="fed-eligible" data-eligible={String(membership.eligible_now.eligible)}>
          {membership.eligible_now.eligible
            ? "may take part"
            : `waits: ${membership.eligible_now.reasons.join(", ")}`}
          {conditions && (
            <span class="muted">
              {" "}
              ({conditions.on_power === null ? "power unknown" : conditions.on_power ? "plugged in" : "on battery"},{" "}
              {conditions.idle === null ? "load unknown" : conditions.idle ? "idle" : "busy"}, {conditions.local_hour}:00)
            </span>
          )}
        </dd>
      </dl>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <PolicyFields
          policy={policy}
          onChange={(p) => {
            setPolicy(p);
            setSaved(false);
          }}
          prefix="policy"
        />
        <div class="row">
          <button id="fed-policy-save" type="submit" disabled={!changed}>
            Save
          </button>
          {saved && !changed && (
            <span role="status" id="fed-policy-saved">
              Saved.
            </span>
          )}
        </div>
      </form>
      <RoundJob membership={membership} onFinished={onChanged} />
      <ErrorNote error={error} />
    </div>
  );
}

function RoundJob({ membership, onFinished }: { membership: MembershipStatus; onFinished: () => void }) {
  const [model, setModel] = useState("");
  // Steps and sequence length start as the library's defaults
  // (`request_defaults`); `null` until the person changes them.
  const defaults = useLoad(() => api.requestDefaults(), []);
  const [stepsEdit, setSteps] = useState<number | null>(null);
  const [seqLenEdit, setSeqLen] = useState<number | null>(null);
  const steps = stepsEdit ?? defaults.value?.federated_round.steps;
  const seqLen = seqLenEdit ?? defaults.value?.federated_round.seq_len;
  const job = useJob<ParticipationSummary>(() => onFinished(), "federate");
  const progress = job.progress;
  const result = progress?.result;
  const start = () =>
    void job.start((onEvent) =>
      api.startFederatedRound(
        {
          membership: membership.id,
          model: model || null,
          ...(steps !== undefined && { steps }),
          ...(seqLen !== undefined && { seq_len: seqLen }),
          rounds: 1,
        },
        onEvent,
      ),
    );
  return (
    <div class="round" aria-labelledby="round-title">
      <h4 id="round-title">Take part in a round</h4>
      <p class="muted">
        Waits for the server's next round (and for the conditions above), learns from your notes for a few
        steps, then sends the protected change. You can cancel at any time.
      </p>
      <div class="form-grid">
        <label>
          Base model (the federation's)
          <input
            id="fed-round-model"
            type="text"
            placeholder="the federation's model"
            value={model}
            onInput={(e) => setModel(e.currentTarget.value)}
          />
        </label>
        <label>
          Training steps
          <input
            id="fed-round-steps"
            type="number"
            min={1}
            value={steps}
            onInput={(e) => {
              const n = Number.parseInt(e.currentTarget.value, 10);
              if (n > 0) setSteps(n);
            }}
          />
        </label>
        <label>
          Sequence length
          <input
            id="fed-round-seq"
            type="number"
            min={2}
            value={seqLen}
            onInput={(e) => {
              const n = Number.parseInt(e.currentTarget.value, 10);
              if (n > 1) setSeqLen(n);
            }}
          />
        </label>
      </div>
      <div class="row">
        <button id="fed-round-start" class="primary" onClick={start} disabled={job.running}>
          Take part now
        </button>
        {job.running && (
          <button id="fed-round-cancel" onClick={() => void job.cancel()}>
            Cancel
          </button>
        )}
      </div>
      {progress && progress.status === "running" && <ProgressBar progress={progress} label="Federated round progress" />}
      {progress && progress.notes.length > 0 && (
        <ul class="notes" aria-live="polite" aria-label="What the round did">
          {progress.notes.map((note, i) => (
            <li key={i}>{note}</li>
          ))}
        </ul>
      )}
      <ErrorNote error={progress?.error ?? null} />
      {result && (
        <p id="fed-round-result" role="status" data-rounds={result.rounds.length}>
          {result.rounds.length > 0
            ? result.rounds
                .map(
                  (r) =>
                    `Round ${r.round} done: sent ${formatBytes(r.bytes_sent)}, ε ${r.epsilon.toFixed(2)} this round, global version ${r.global_version}, verified in the server's log.`,
                )
                .join(" ") + ` Privacy spent: ε ${result.epsilon_spent.toFixed(2)} of ${result.epsilon_budget}.`
            : result.cancelled
              ? "Cancelled before a round: nothing was shared."
              : "No round for this device yet."}
        </p>
      )}
    </div>
  );
}

function History({ uploads, error }: { uploads: UploadRecord[]; error: AppError | null }) {
  return (
    <div class="card" aria-labelledby="uploads-title">
      <h3 id="uploads-title">Everything this device shared</h3>
      <ErrorNote error={error} />
      {uploads.length === 0 ? (
        <p class="muted" id="fed-history-empty">
          Nothing has been shared.
        </p>
      ) : (
        <div class="table-scroll">
          <table class="table" id="fed-history">
            <caption>{plural(uploads.length, "upload")}, newest last</caption>
            <thead>
              <tr>
                <th scope="col">When (UTC)</th>
                <th scope="col">Federation</th>
                <th scope="col">Round</th>
                <th scope="col">Sent</th>
                <th scope="col">Received</th>
                <th scope="col">ε</th>
                <th scope="col">Upload SHA-256</th>
              </tr>
            </thead>
            <tbody>
              {uploads.map((u) => (
                <tr key={u.id}>
                  <td>{u.uploaded_at.replace("T", " ").slice(0, 19)}</td>
                  <td>{u.federation_id}</td>
                  <td>{u.round}</td>
                  <td>{formatBytes(u.bytes_sent)}</td>
                  <td>{formatBytes(u.bytes_received)}</td>
                  <td>{u.epsilon.toFixed(2)}</td>
                  <td>
                    <code title={u.upload_sha256}>{u.upload_sha256.slice(0, 16)}…</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
