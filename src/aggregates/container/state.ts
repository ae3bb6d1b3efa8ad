// The container aggregate's state and its pure evolve. The read model is nothing but these
// states folded from the log.
import type { ContainerEvent, MigrationTransfer, Revision, StoredEvent } from "../../events/types.js";
import { OUTCOMES } from "../../events/types.js";
import type { ContainerSpec, RestartPolicy } from "../../shared/spec.js";
import { nextState, type LifecycleState } from "./transitions.js";
import { patchAnnotations } from "../../shared/spec-rules.js";

export type Health = "none" | "starting" | "healthy" | "unhealthy";

export interface PendingIntent {
  type: ContainerEvent["type"];
  eventId: string;
  seq: number;
  data: Record<string, unknown>;
}

/**
 * An upgrade or rollback in progress: the saga's state, folded from its events on the container's
 * own subject (upgrade.ts's `upgradeNext` reads it to say what the owning node does next).
 */
export interface UpgradeSaga {
  kind: "upgrade" | "rollback";
  /** The revision it ran when the saga began, and the one the saga goes to. */
  from: Revision;
  to: Revision;
  /** It was running when the saga began: it runs again at the end, on whichever revision. */
  wasRunning: boolean;
  gateSec: number;
  /** Set by ContainerUpgradeFailed: the saga goes back to `from`. */
  failed: string | null;
  /** The run of the active revision since its activation in this saga: when it started, how it ended. */
  runStartedAt: string | null;
  runExit: number | null;
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
  /** 0 at create; each upgrade makes the next (its own rw layer on the host). */
  revision: number;
  /** The highest revision number any upgrade took (failed ones too): numbers, and so layer dirs, are never reused. */
  lastRevision: number;
  /** The revision before the last upgrade, kept (with its rw layer) for `rollback`; null when there is none. */
  previous: Revision | null;
  upgrade: UpgradeSaga | null;
  /** The checkpoint its process was frozen into (a checkpoint without leaveRunning), until it runs again. */
  checkpointed: string | null;
  /** The migration under way (its intent pending): absent or null when there is none. */
  migration?: MigrationSaga | null;
}

export interface MigrationSaga {
  checkpointId: string;
  fromNode: string;
  toNode: string;
  preCopy: boolean;
  /** When the source froze it for the final dump (set once the archive is stored). */
  dumpedAt: string | null;
  frozenMs: number;
  /** Where the target takes the archive from: the object store, or the source itself (its local dir). */
  transfer: MigrationTransfer;
  /** Why the target could not restore it (the source restores it then). */
  restoreFailed: string | null;
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
      revision: 0,
      lastRevision: 0,
      previous: null,
      upgrade: null,
      checkpointed: null,
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
  // Whatever ends the saga's intent (its outcomes, a forced remove overtaking it) ends the saga.
  if (s.upgrade && n.pending?.type !== "ContainerUpgradeRequested" && n.pending?.type !== "ContainerRollbackRequested") n.upgrade = null;
  if (s.migration && n.pending?.type !== "ContainerMigrationRequested") n.migration = null;

  switch (e.type) {
    case "ContainerStartRequested":
      n.stoppedByUser = false;
      // A start by the user (not the policy) begins a fresh backoff.
      if (s.state !== "restarting") n.restartAttempt = 0;
      break;
    case "ContainerRestartRequested":
      n.stoppedByUser = false;
      break;
    case "ContainerRestored":
    case "ContainerStarted":
      n.checkpointed = null;
      n.restartDueAt = null;
      n.pid = e.data.pid;
      n.startedAt = e.data.startedAt;
      if (e.data.ip) n.ip = e.data.ip;
      if (n.upgrade && n.revision === sagaTarget(n.upgrade).revision) n.upgrade = { ...n.upgrade, runStartedAt: e.data.startedAt, runExit: null };
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
      if (n.upgrade?.runStartedAt) n.upgrade = { ...n.upgrade, runExit: e.data.exitCode };
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
      if (e.data.annotations) {
        spec.annotations = patchAnnotations(spec.annotations, e.data.annotations);
        n.annotations = { ...spec.annotations };
      }
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
    case "ContainerCheckpointed":
      if (!e.data.leaveRunning) n.checkpointed = e.data.checkpointId;
      break;
    case "ContainerRestoreRequested":
      n.stoppedByUser = false;
      break;
    case "ContainerCheckpointRequested":
      break;
    case "ContainerMigrationRequested":
      n.migration = { checkpointId: e.data.checkpointId, fromNode: e.data.fromNode, toNode: e.data.toNode, preCopy: e.data.preCopy, dumpedAt: null, frozenMs: 0, transfer: "store", restoreFailed: null };
      break;
    case "ContainerMigrationDumped":
      if (n.migration) n.migration = { ...n.migration, dumpedAt: e.data.dumpedAt, frozenMs: e.data.frozenMs, transfer: e.data.transfer ?? "store" };
      break;
    case "ContainerMigrationRestoreFailed":
      if (n.migration) n.migration = { ...n.migration, restoreFailed: e.data.reason };
      break;
    case "ContainerMigrated":
    case "MigrationFailed":
      // Ownership moves only here: the target's daemon acts on it from now on.
      if (e.type === "ContainerMigrated") n.node = e.data.toNode;
      n.migration = null;
      n.checkpointed = null;
      n.restartDueAt = null;
      n.pid = e.data.pid;
      n.startedAt = e.data.startedAt;
      n.ip = e.data.ip ?? (e.type === "ContainerMigrated" ? null : n.ip);
      n.exitCode = null;
      n.oomKilled = false;
      n.lastError = e.type === "MigrationFailed" ? `migration: ${e.data.reason}` : null;
      break;
    case "ContainerUpgradeRequested": {
      const { healthGateSec, ...to } = e.data;
      n.lastRevision = Math.max(s.lastRevision, to.revision);
      n.upgrade = { kind: "upgrade", from: revisionOf(s), to, wasRunning: isUp(s), gateSec: healthGateSec, failed: null, runStartedAt: null, runExit: null };
      break;
    }
    case "ContainerRollbackRequested":
      if (s.previous?.revision === e.data.revision) {
        n.upgrade = { kind: "rollback", from: revisionOf(s), to: s.previous, wasRunning: isUp(s), gateSec: 0, failed: null, runStartedAt: null, runExit: null };
      }
      break;
    case "ContainerRevisionActivated": {
      const r = s.upgrade && [s.upgrade.to, s.upgrade.from].find((x) => x.revision === e.data.revision);
      if (!r || !n.upgrade) break;
      n.revision = r.revision;
      n.image = r.image;
      n.imageDigest = r.imageDigest;
      n.spec = r.spec;
      n.labels = r.spec.labels ?? {};
      n.annotations = r.spec.annotations ?? {};
      n.restartPolicy = r.spec.restartPolicy ?? { name: "no" };
      n.health = r.spec.healthcheck ? "starting" : "none";
      n.upgrade = { ...n.upgrade, runStartedAt: null, runExit: null };
      break;
    }
    case "ContainerUpgradeFailed":
      if (s.upgrade) n.upgrade = { ...s.upgrade, failed: e.data.reason };
      n.lastError = `upgrade: ${e.data.reason}`;
      break;
    case "ContainerUpgraded":
      if (s.upgrade) n.previous = s.upgrade.from;
      break;
    case "ContainerUpgradeRolledBack":
      // `rollback` spends the previous revision; a failed upgrade leaves it as it was.
      if (s.upgrade?.kind === "rollback") n.previous = null;
      else n.lastError = `upgrade rolled back: ${e.data.reason}`;
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

/** The revision a container runs now, as a saga keeps it. */
export function revisionOf(s: ContainerState): Revision {
  return { revision: s.revision, image: s.image, imageDigest: s.imageDigest, spec: s.spec };
}

/** The revision a saga is heading for now: its `to`, or back to `from` once the upgrade failed. */
export function sagaTarget(u: UpgradeSaga): Revision {
  return u.failed !== null ? u.from : u.to;
}

const isUp = (s: ContainerState) => s.state === "running" || s.state === "paused";

/** Actors berth itself uses (`berth/<node>/…`): the executor, restart policy, health checks. */
export function isSystemActor(actor: string): boolean {
  return actor.startsWith("berth/");
}

export function isContainerEvent(e: StoredEvent): e is ContainerEvent & { seq: number; subject: string } {
  return e.type.startsWith("Container");
}
