// The events of the log: one envelope (API.md), a discriminated union of payloads. Events are
// facts or intents, never rewritten; `v` is the payload's schema version.
import { createHash } from "node:crypto";
import type { ContainerSpec, Healthcheck, PodSpec, Resources, RestartPolicy } from "../shared/spec.js";
import type { ImageConfig } from "../shared/host-facts.js";

export const STREAM = "BERTH_EVENTS";
export const SUBJECT_ROOT = "berth.ev";
export const containerSubject = (id: string) => `${SUBJECT_ROOT}.container.${id}`;
export const imageSubject = (digest: string) => `${SUBJECT_ROOT}.image.${digest.replace(/^sha256:/, "")}`;
export const nodeSubject = (node: string) => `${SUBJECT_ROOT}.node.${node}`;
export const podSubject = (id: string) => `${SUBJECT_ROOT}.pod.${id}`;
export const checkpointSubject = (id: string) => `${SUBJECT_ROOT}.checkpoint.${id}`;
export const nameSubject = (key: string) => `${SUBJECT_ROOT}.name.${key}`;
/** A name's subject token: a hash of its kind and itself (a name may hold dots, which subjects split on). */
export const nameKey = (kind: "container" | "pod", name: string) => createHash("sha256").update(`${kind}\0${name}`).digest("hex");

export interface Meta {
  actor?: string;
  requestId?: string;
  correlationId?: string;
}

/** What every event carries besides its payload. */
export interface Envelope<T extends string, D> {
  readonly type: T;
  readonly v: number;
  readonly eventId: string;
  readonly at: string;
  readonly node: string;
  readonly actor: string;
  readonly correlationId: string;
  readonly causationId: string | null;
  /**
   * sha256 (hex) of the stored bytes of the subject's previous message, null for its first. The
   * store sets it on append (chain.ts); events written before the chain lack it.
   */
  readonly prevHash?: string | null;
  readonly data: D;
}

// --- container -----------------------------------------------------------------------------
export interface ContainerCreatedData {
  id: string;
  name: string;
  image: string;
  imageDigest: string;
  /** The owning node: only its daemon touches the container's processes. */
  node: string;
  /** The spec as accepted, with defaults filled in. */
  spec: ContainerSpec;
}
export interface ContainerStartedData {
  pid: number;
  startedAt: string;
  /** Its address on the node's bridge network (bridge mode, or a pod member: the pod's). */
  ip?: string;
}
export interface ContainerExitedData {
  exitCode: number;
  oomKilled: boolean;
  exitedAt: string;
}
export interface ContainerUpdatedData {
  restartPolicy?: RestartPolicy;
  resources?: Resources;
  healthcheck?: Healthcheck | null;
  /** A patch of its annotations: a key set to null goes. */
  annotations?: Record<string, string | null>;
}

/** One revision of a container: what it runs (each upgrade makes the next, with its own rw layer). */
export interface Revision {
  revision: number;
  image: string;
  imageDigest: string;
  spec: ContainerSpec;
}
export interface ContainerUpgradeRequestedData extends Revision {
  /** How long the new revision must stay up (and not turn unhealthy) before the upgrade is settled. */
  healthGateSec: number;
}
export interface ContainerUpgradedData {
  fromImage: string;
  fromDigest: string;
  toImage: string;
  toDigest: string;
  revision: number;
}
export interface ContainerUpgradeRolledBackData {
  reason: string;
  /** The revision it is back on, and that revision's image. */
  revision: number;
  image: string;
  imageDigest: string;
  /** The revision it left. */
  fromRevision: number;
}

export type ContainerEvent =
  | Envelope<"ContainerCreated", ContainerCreatedData>
  | Envelope<"ContainerStartRequested", { attempt?: number }>
  | Envelope<"ContainerStarted", ContainerStartedData>
  | Envelope<"ContainerStartFailed", { error: string }>
  | Envelope<"ContainerStopRequested", { signal: string; timeoutSec: number }>
  | Envelope<"ContainerKillRequested", { signal: string }>
  /** The kill's outcome: the signal was delivered (an exit, if any, is its own event). */
  | Envelope<"ContainerSignaled", { signal: string }>
  | Envelope<"ContainerRestartRequested", { timeoutSec: number }>
  | Envelope<"ContainerExited", ContainerExitedData>
  | Envelope<"ContainerPauseRequested", Record<string, never>>
  | Envelope<"ContainerPaused", Record<string, never>>
  | Envelope<"ContainerUnpauseRequested", Record<string, never>>
  | Envelope<"ContainerUnpaused", Record<string, never>>
  | Envelope<"ContainerUpdated", ContainerUpdatedData>
  | Envelope<"ContainerRemoveRequested", { force: boolean }>
  /** Its bridge attachment was released (CNI DEL: lease, veth, NAT and port rules) on its removal. */
  | Envelope<"ContainerNetworkDetached", { ip: string }>
  | Envelope<"ContainerRemoved", Record<string, never>>
  /** The restart policy decided to start it again after `delayMs` (backoff); `attempt` counts from 1. */
  | Envelope<"ContainerRestartScheduled", { attempt: number; delayMs: number }>
  /** A user's stop while a restart was scheduled: no process to stop, the restart is off. */
  | Envelope<"ContainerRestartCancelled", Record<string, never>>
  | Envelope<"ContainerHealthChanged", { status: "starting" | "healthy" | "unhealthy"; failingStreak: number; output?: string }>
  /** Recovery could not hand the container back (e.g. its image is gone). */
  | Envelope<"ContainerRestoreFailed", { reason: string }>
  /** A requested action (stop, kill, pause, unpause, remove) failed on the host. */
  | Envelope<"ContainerActionFailed", { action: string; error: string }>
  /** An exec session began (audit): its argv and the user asked for ("" = the container's own). */
  | Envelope<"ContainerExecStarted", ContainerExecStartedData>
  /** An exec session ended: the process's exit code (137 when killed at its timeout, -1 when it never ran). */
  | Envelope<"ContainerExecExited", { execId: string; exitCode: number }>
  /** The upgrade saga's intent: the next revision (merged spec, new image) and its health gate. */
  | Envelope<"ContainerUpgradeRequested", ContainerUpgradeRequestedData>
  /** `berth rollback`'s intent: back to the revision before the last upgrade. */
  | Envelope<"ContainerRollbackRequested", { revision: number }>
  /** A saga step: the host now runs (at its next start) this revision's rw layer and config. */
  | Envelope<"ContainerRevisionActivated", { revision: number }>
  /** A saga step: the new revision failed (start, exit or health within the gate); it goes back. */
  | Envelope<"ContainerUpgradeFailed", { reason: string }>
  /** The upgrade is settled: the new revision passed its health gate (or the container was stopped). */
  | Envelope<"ContainerUpgraded", ContainerUpgradedData>
  /** Back on the previous revision: after a failed upgrade, or by `berth rollback` (reason "requested"). */
  | Envelope<"ContainerUpgradeRolledBack", ContainerUpgradeRolledBackData>
  /** The checkpoint saga's intent: dump it with CRIU into checkpoint `checkpointId`. */
  | Envelope<"ContainerCheckpointRequested", CheckpointOptions & { checkpointId: string }>
  /** Its checkpoint is stored (CheckpointCreated on the checkpoint's subject); without leaveRunning its process is gone. */
  | Envelope<"ContainerCheckpointed", { checkpointId: string; leaveRunning: boolean; preDump?: boolean; frozenMs?: number }>
  /** The restore's intent: bring back the process checkpoint `checkpointId` froze. */
  | Envelope<"ContainerRestoreRequested", { checkpointId: string }>
  /** Its process runs again, restored from the checkpoint (memory, files, rw layer). */
  | Envelope<"ContainerRestored", { checkpointId: string; pid: number; startedAt: string; ip?: string; lazyPages?: boolean }>
  /** The migration saga's intent: the source node dumps it into checkpoint `checkpointId`, the target restores it. */
  | Envelope<"ContainerMigrationRequested", { checkpointId: string; fromNode: string; toNode: string; preCopy: boolean }>
  /**
   * The source froze and dumped it at `dumpedAt` (its process is gone): the target's turn. The
   * archive is in the object store (`transfer` "store", or absent), or the source keeps it and
   * sends it to the target itself ("direct": archive-transfer.ts).
   */
  | Envelope<"ContainerMigrationDumped", { checkpointId: string; dumpedAt: string; frozenMs: number; transfer?: MigrationTransfer }>
  /** The target could not restore it: the source restores it from the same checkpoint. */
  | Envelope<"ContainerMigrationRestoreFailed", { checkpointId: string; node: string; reason: string }>
  /** It runs on `toNode` now (its owner from here on), restored from the checkpoint. */
  | Envelope<"ContainerMigrated", { checkpointId: string; fromNode: string; toNode: string; downtimeMs: number; pid: number; startedAt: string; ip?: string; pod?: string; lazyPages?: boolean }>
  /** The migration failed and was compensated: it runs on `node` (the source) again, restored from the same checkpoint. */
  | Envelope<"MigrationFailed", { checkpointId: string; node: string; reason: string; compensated: boolean; pid: number; startedAt: string; ip?: string }>;

/** How a migration's archive goes from its source to its target (ContainerMigrationDumped). */
export type MigrationTransfer = "store" | "direct";

export interface CheckpointOptions {
  leaveRunning: boolean;
  tcpEstablished: boolean;
  fileLocks: boolean;
  /** A pre-dump (memory only, the container runs on), the parent of its next checkpoint. */
  preDump?: boolean;
  /** The pod checkpoint this one is a member's part of (its retention is the pod checkpoint's). */
  partOf?: string;
}

export interface ContainerExecStartedData {
  execId: string;
  cmd: string[];
  user: string;
}

// --- pod -----------------------------------------------------------------------------------
export interface PodCreatedData {
  id: string;
  name: string;
  node: string;
  /** As accepted: share and network filled in. */
  spec: PodSpec;
}
export type PodEvent =
  | Envelope<"PodCreated", PodCreatedData>
  /** Every member was started (`pod start`), and the pod's IP. */
  | Envelope<"PodStarted", { ip?: string; containers: string[] }>
  /** Every member was stopped (`pod stop`). */
  | Envelope<"PodStopped", { containers: string[] }>
  /** Its members are gone; the owning node releases its namespaces, attachment and cgroup. */
  | Envelope<"PodRemoved", { containers: string[] }>
  /**
   * The pod checkpoint saga's intent: freeze `members` (all that ran), dump each, then stop them
   * or let them run on. `pausedBefore`: members the user had paused, which stay paused.
   */
  | Envelope<"PodCheckpointRequested", PodCheckpointOptions & { checkpointId: string; members: string[]; pausedBefore: string[] }>
  /** Its outcome: PodCheckpointCreated is on the checkpoint's subject; without leaveRunning its members are stopped. */
  | Envelope<"PodCheckpointed", { checkpointId: string; leaveRunning: boolean }>
  /** Its other outcome: a member could not be frozen or dumped; the others run on as before, no checkpoint is kept. */
  | Envelope<"PodCheckpointFailed", { checkpointId: string; reason: string }>
  /** Every member was restored from the pod checkpoint `checkpointId`. */
  | Envelope<"PodRestored", { checkpointId: string; containers: string[] }>
  /**
   * The pod migration saga's intent: the source checkpoints the pod (pod checkpoint
   * `checkpointId`, its members stopped), the target restores every member into a sandbox of its own.
   */
  | Envelope<"PodMigrationRequested", { checkpointId: string; fromNode: string; toNode: string; preCopy: boolean }>
  /** The source's pod checkpoint is stored; `frozenAt`: when its members were frozen (the downtime's start). */
  | Envelope<"PodMigrationDumped", { checkpointId: string; dumpedAt: string; frozenAt: string }>
  /** The target could not restore it (and kept nothing of it): the source restores it from the same checkpoint. */
  | Envelope<"PodMigrationRestoreFailed", { checkpointId: string; node: string; reason: string }>
  /** Every member runs on the target (each has its own ContainerMigrated): the pod is the target's now. */
  | Envelope<"PodMigrated", { checkpointId: string; fromNode: string; toNode: string; downtimeMs: number; ip?: string; containers: string[] }>
  /** The migration did not happen: the pod runs on `node` (the source); `compensated` when it was restored there. */
  | Envelope<"PodMigrationFailed", { checkpointId: string; node: string; reason: string; compensated: boolean }>;

export interface PodCheckpointOptions {
  leaveRunning: boolean;
  tcpEstablished: boolean;
  fileLocks: boolean;
}

// --- checkpoint ----------------------------------------------------------------------------
export interface CheckpointCreatedData {
  checkpointId: string;
  container: string;
  containerName: string;
  pod: string | null;
  node: string;
  image: string;
  imageDigest: string;
  /** The container's spec as it was checkpointed: what a restore under a new name is made of. */
  spec: ContainerSpec;
  ip?: string;
  /** The archive in the object store `berth_checkpoints`: its size and digest (`SHA-256=<base64url>`). */
  sizeBytes: number;
  digest: string;
  durationMs: number;
  frozenMs: number;
  /** Of durationMs: CRIU's dump with the rw layer's tar, and the archive's upload. */
  dumpMs: number;
  uploadMs: number;
  leaveRunning: boolean;
  tcpEstablished: boolean;
  /** The pod checkpoint it is a member's part of. */
  partOf?: string;
  /** CRIU's dump statistics. */
  stats?: { freezingMs: number; frozenMs: number; memdumpMs: number; memwriteMs: number; pagesScanned: number; pagesWritten: number };
}
/** One member of a pod checkpoint: its container and that container's own checkpoint. */
export interface PodCheckpointMember {
  container: string;
  name: string;
  checkpointId: string;
}
/** A pod checkpoint's record: the pod as it was and its members' checkpoints, taken at one point. */
export interface PodCheckpointCreatedData {
  checkpointId: string;
  pod: string;
  podName: string;
  node: string;
  podSpec: PodSpec;
  ip?: string;
  members: PodCheckpointMember[];
  /** Of every member's archive together. */
  sizeBytes: number;
  durationMs: number;
  /** From the first member's freeze to the last one's dump: no member ran meanwhile. */
  frozenMs: number;
  leaveRunning: boolean;
  tcpEstablished: boolean;
}
export type CheckpointEvent =
  | Envelope<"CheckpointCreated", CheckpointCreatedData>
  | Envelope<"PodCheckpointCreated", PodCheckpointCreatedData>
  /** It was restored into `container` (the same one, or a new one). */
  | Envelope<"CheckpointRestored", { checkpointId: string; container: string; durationMs: number }>
  /** Its archive is gone (`checkpoint rm`, or the retention rule). */
  | Envelope<"CheckpointRemoved", { checkpointId: string; reason: string }>;

// --- image and node ------------------------------------------------------------------------
export interface ImageImportedData {
  name: string;
  digest: string;
  sizeBytes: number;
  config: ImageConfig;
}
export type ImageEvent =
  | Envelope<"ImageImported", ImageImportedData>
  | Envelope<"ImageRemoved", { name: string; digest: string }>;

export type NodeEvent =
  | Envelope<"NodeStarted", { httpUrl: string; version: string; dataRoot: string }>
  /** Recovery is done: how many of this node's containers it handed back, and how long it took. */
  | Envelope<"NodeRestored", { containers: number; durationMs: number; failed: number; orphans: string[] }>
  /** The node ran without its log (local checkpoints): from `since`, what it started from copies. */
  | Envelope<"NodeOffline", { since: string; started: string[] }>
  /** The log was back at `at`: the offline span's `facts` journaled facts were appended (the span in ms). */
  | Envelope<"NodeOnline", { since: string; at: string; spanMs: number; facts: number }>;

// --- name ------------------------------------------------------------------------------------
/** Who holds a name, cluster-wide (aggregates/name): claimed before its container or pod is created. */
export type NameEvent =
  | Envelope<"NameClaimed", { name: string; kind: "container" | "pod"; owner: string }>
  | Envelope<"NameReleased", { name: string; kind: "container" | "pod"; owner: string }>;

export type BerthEvent = ContainerEvent | PodEvent | CheckpointEvent | ImageEvent | NodeEvent | NameEvent;
export type EventType = BerthEvent["type"];
export type EventOf<T extends EventType> = Extract<BerthEvent, { type: T }>;
export type DataOf<T extends EventType> = EventOf<T>["data"];

/** An event as read back from the stream: where it sits in the log. */
export type StoredEvent = BerthEvent & { seq: number; subject: string };

/**
 * Intent types and the outcomes that answer them. A restart's own exit is not its outcome: the
 * restart stays pending until the container runs again (or fails to).
 */
export const OUTCOMES: Partial<Record<EventType, readonly EventType[]>> = {
  ContainerStartRequested: ["ContainerStarted", "ContainerStartFailed"],
  ContainerStopRequested: ["ContainerExited", "ContainerActionFailed"],
  ContainerKillRequested: ["ContainerSignaled", "ContainerActionFailed"],
  ContainerRestartRequested: ["ContainerStarted", "ContainerStartFailed", "ContainerActionFailed"],
  ContainerPauseRequested: ["ContainerPaused", "ContainerActionFailed"],
  ContainerUnpauseRequested: ["ContainerUnpaused", "ContainerActionFailed"],
  ContainerRemoveRequested: ["ContainerRemoved", "ContainerActionFailed"],
  ContainerUpgradeRequested: ["ContainerUpgraded", "ContainerUpgradeRolledBack", "ContainerActionFailed"],
  ContainerRollbackRequested: ["ContainerUpgradeRolledBack", "ContainerActionFailed"],
  ContainerCheckpointRequested: ["ContainerCheckpointed", "ContainerActionFailed"],
  ContainerRestoreRequested: ["ContainerRestored", "ContainerStartFailed"],
  PodCheckpointRequested: ["PodCheckpointed", "PodCheckpointFailed"],
  PodMigrationRequested: ["PodMigrated", "PodMigrationFailed"],
  ContainerMigrationRequested: ["ContainerMigrated", "MigrationFailed", "ContainerActionFailed"],
};

export const EVENT_VERSION = 1;
