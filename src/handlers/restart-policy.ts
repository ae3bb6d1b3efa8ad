// The restart policy as one pure decision with Docker's semantics. The executor asks it after an
// exit under a running daemon; recovery asks it (trigger "boot") for containers found
// stopped after a daemon or host restart. The backoff state it reads (`attempt`) comes from the
// log, so a daemon restart neither resets nor repeats it. Table-tested in
// test/unit/restart-policy.spec.ts.
import type { RestartPolicy } from "../shared/spec.js";

export type Backoff = NonNullable<RestartPolicy["backoff"]>;

/** Docker's schedule: 100 ms doubling up to 60 s, reset after 10 s of running (evolve applies the reset). */
export const BACKOFF_DEFAULTS = { initialMs: 100, maxMs: 60_000, resetAfterMs: 10_000 } as const;

export interface RestartInput {
  policy: RestartPolicy;
  /** The exit code of the run that ended; -1 when there is none (the start failed): a failure. */
  exitCode: number;
  /** The user stopped, killed or removed it since its last start (state.stoppedByUser). */
  stoppedByUser: boolean;
  /** The attempt of the last scheduled restart (state.restartAttempt; 0 after a reset). */
  attempt: number;
  autoRemove: boolean;
  /**
   * "exit" (default): it just stopped under a running daemon. "boot": the daemon (or the host)
   * came back and found it stopped; only there do `always` and `unless-stopped` differ.
   */
  trigger?: "exit" | "boot";
}

export type RestartDecision =
  | { restart: false; reason: string }
  | { restart: true; attempt: number; delayMs: number };

const no = (reason: string): RestartDecision => ({ restart: false, reason });

export function decideRestart(i: RestartInput): RestartDecision {
  const p = i.policy;
  if (i.autoRemove) return no("autoRemove: removed on exit, never restarted");
  switch (p.name) {
    case "no":
      return no("restart policy is 'no'");
    case "always":
      // Docker: a user's stop holds until the next start, or until the daemon comes back.
      if (i.stoppedByUser && i.trigger !== "boot") return no("stopped by the user");
      break;
    case "unless-stopped":
      if (i.stoppedByUser) return no("stopped by the user");
      break;
    case "on-failure":
      // Stricter than Docker at boot, which would restart a user-stopped one that exited non-zero.
      if (i.stoppedByUser) return no("stopped by the user");
      if (i.exitCode === 0) return no("exited with 0 under 'on-failure'");
      if (p.maxRetries && i.attempt >= p.maxRetries) return no(`gave up after ${p.maxRetries} restarts`);
      break;
    default: {
      const _never: never = p.name;
      return no(`unknown restart policy '${String(_never)}'`);
    }
  }
  const attempt = Math.max(0, i.attempt) + 1;
  return { restart: true, attempt, delayMs: backoffDelay(p.backoff, attempt) };
}

/** The wait before restart `attempt` (counting from 1): initialMs × 2^(attempt-1), capped at maxMs. */
export function backoffDelay(backoff: Backoff | undefined, attempt: number): number {
  const initial = backoff?.initialMs ?? BACKOFF_DEFAULTS.initialMs;
  const max = backoff?.maxMs ?? BACKOFF_DEFAULTS.maxMs;
  // 2 ** n becomes Infinity for absurd attempts; min() caps that too.
  return Math.min(initial * 2 ** (Math.max(1, attempt) - 1), max);
}
