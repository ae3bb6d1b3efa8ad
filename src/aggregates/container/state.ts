// The container aggregate's state and its pure evolve. The read model is nothing but these
// states folded from the log.
import type { ContainerEvent, StoredEvent } from "../../events/types.js";
import { OUTCOMES } from "../../events/types.js";
import type { ContainerSpec, RestartPolicy } from "../../shared/spec.js";
import { nextState, type LifecycleState } from "./transitions.js";

export type Health = "none" | "starting" | "healthy" | "unhealthy";

export interface PendingIntent {
  type: ContainerEvent["type"];
  eventId: string;
  seq: number;
  data: Record<string, unknown>;
}

export interface ContainerState {
  id: string;
  name: string;
  image: string;
  imageDigest: string;
  state: LifecycleState;
  node: string;
  pid: number | null;
  exitCode: number | null;
  oomKilled: boolean;
  restartCount: number;
  health: Health;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  restartPolicy: RestartPolicy;
  /** Stream sequence of the container's last event: the expected version for the next append. */
  version: number;
  spec: ContainerSpec;
  /** An intent waiting for its outcome (at most one at a time). */
  pending: PendingIntent | null;
  /** The user stopped it: restart policies stay quiet until the next start. */
  stoppedByUser: boolean;
  lastError: string | null;
  /**
   * Restart backoff as the log says it: the attempt of the last scheduled restart (0 = none since
   * the container last ran long enough to reset), and when that restart is due (RFC 3339).
   */
  restartAttempt: number;
  restartDueAt: string | null;
  /** Set when the container has left the read model. */
  removed: boolean;
  /**
   * Its bridge IP, from the last start; kept while it is stopped (the attachment lives until the
   * container is removed), so the next start asks for the same one.
   */
  ip: string | null;
}

/**
 * Apply one event. Pure: returns a new state. The log is the truth, so an event the table does
 * not allow still applies its facts (it was written); the projector counts such events.
 */
export function evolve(s: ContainerState | null, e: ContainerEvent & { seq: number }): ContainerState | null {
  if (e.type === "ContainerCreated") {
    const d = e.data;
    return {
      id: d.id,
      name: d.name,
      image: d.image,
      imageDigest: d.imageDigest,
      state: "created",
      node: d.node,
      pid: null,
      exitCode: null,
      oomKilled: false,
      restartCount: 0,
      health: d.spec.healthcheck ? "starting" : "none",
      createdAt: e.at,
      startedAt: null,
      finishedAt: null,
      labels: d.spec.labels ?? {},
      annotations: d.spec.annotations ?? {},
      restartPolicy: d.spec.restartPolicy ?? { name: "no" },
      version: e.seq,
      spec: d.spec,
      pending: null,
      stoppedByUser: false,
      lastError: null,
      restartAttempt: 0,
      restartDueAt: null,
      removed: false,
      ip: null,
    };
  }
  if (!s) return null;
  const target = nextState(s.state, e.type);
  const n: ContainerState = { ...s, version: e.seq };
  if (target && target !== "removed") n.state = target;

  // An outcome answers the pending intent; a new intent becomes pending.
  if (s.pending && OUTCOMES[s.pending.type]?.includes(e.type)) n.pending = null;
  if (OUTCOMES[e.type]) {
    n.pending = { type: e.type, eventId: e.eventId, seq: e.seq, data: e.data as Record<string, unknown> };
  }

  switch (e.type) {
    case "ContainerStartRequested":
      n.stoppedByUser = false;
      // A start by the user (not the policy) begins a fresh backoff.
      if (s.state !== "restarting") n.restartAttempt = 0;
      break;
    case "ContainerRestartRequested":
      n.stoppedByUser = false;
      break;
    case "ContainerStarted":
      n.restartDueAt = null;
      n.pid = e.data.pid;
      n.startedAt = e.data.startedAt;
      if (e.data.ip) n.ip = e.data.ip;
      n.exitCode = null;
      n.oomKilled = false;
      n.lastError = null;
      // Docker's RestartCount: starts made by the restart policy (their intent carries an attempt).
      if (typeof s.pending?.data.attempt === "number") n.restartCount = s.restartCount + 1;
      if (n.spec.healthcheck) n.health = "starting";
      break;
    case "ContainerStartFailed":
      n.lastError = e.data.error;
      n.pid = null;
      break;
    case "ContainerStopRequested":
    case "ContainerKillRequested":
      // Only a person's stop keeps the restart policy quiet; a health check's kill does not.
      n.stoppedByUser = !isSystemActor(e.actor);
      break;
    case "ContainerExited":
      n.pid = null;
      n.exitCode = e.data.exitCode;
      n.oomKilled = e.data.oomKilled;
      n.finishedAt = e.data.exitedAt;
      if (n.spec.healthcheck) n.health = "none";
      // A run that lasted resetAfterMs resets the backoff (Docker's rule).
      if (s.startedAt && Date.parse(e.data.exitedAt) - Date.parse(s.startedAt) >= (n.spec.restartPolicy?.backoff?.resetAfterMs ?? 10_000)) {
        n.restartAttempt = 0;
      }
      break;
    case "ContainerUpdated": {
      const spec = { ...n.spec };
      if (e.data.restartPolicy) spec.restartPolicy = e.data.restartPolicy;
      if (e.data.resources) spec.resources = { ...spec.resources, ...e.data.resources };
      if (e.data.healthcheck !== undefined) spec.healthcheck = e.data.healthcheck;
      n.spec = spec;
      n.restartPolicy = spec.restartPolicy ?? { name: "no" };
      break;
    }
    case "ContainerActionFailed":
      n.lastError = `${e.data.action}: ${e.data.error}`;
      break;
    case "ContainerNetworkDetached":
      n.ip = null;
      break;
    case "ContainerRemoved":
      n.removed = true;
      n.pid = null;
      break;
    case "ContainerRestartScheduled":
      n.restartAttempt = e.data.attempt;
      n.restartDueAt = new Date(Date.parse(e.at) + e.data.delayMs).toISOString();
      break;
    case "ContainerRestartCancelled":
      n.restartDueAt = null;
      n.stoppedByUser = true;
      break;
    case "ContainerHealthChanged":
      n.health = e.data.status;
      break;
    case "ContainerRestoreFailed":
      n.lastError = `restore: ${e.data.reason}`;
      break;
    // Exec sessions are audit facts: the container's state stays as it is.
    case "ContainerExecStarted":
    case "ContainerExecExited":
    case "ContainerSignaled":
    case "ContainerPauseRequested":
    case "ContainerPaused":
    case "ContainerUnpauseRequested":
    case "ContainerUnpaused":
    case "ContainerRemoveRequested":
      break;
    default: {
      const _never: never = e;
      void _never;
    }
  }
  return n;
}

/** Actors berth itself uses (`berth/<node>/…`): the executor, restart policy, health checks. */
export function isSystemActor(actor: string): boolean {
  return actor.startsWith("berth/");
}

export function isContainerEvent(e: StoredEvent): e is ContainerEvent & { seq: number; subject: string } {
  return e.type.startsWith("Container");
}
