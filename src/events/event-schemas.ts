// One TypeBox schema per event payload (types.ts), so that whatever is read back from the stream
// can be checked before it is folded (DESIGN.md "the log is a trust boundary"). Strict like the
// command bodies: a payload that grows a field is a new `v`, not a silent extra. The table is
// typed by EventType, so a new event type without a schema does not compile.
import { Type, type TSchema } from "@sinclair/typebox";
import { ContainerSpec, Healthcheck, NAME_PATTERN, PodSpec, Resources, RestartPolicy } from "../shared/spec.js";
import type { EventType } from "./types.js";

const Strict = { additionalProperties: false } as const;
/** RFC 3339 as the daemon writes it (toISOString) and as other writers may; Date.parse checks the value. */
export const RFC3339_PATTERN = "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$";
const Time = Type.String({ pattern: RFC3339_PATTERN });
const Id = Type.String({ pattern: "^[0-9a-f]{64}$" });
const Digest = Type.String({ pattern: "^sha256:[0-9a-f]{64}$" });
const Text = (maxLength = 65_536) => Type.String({ maxLength });
// What the writers store: kill normalizes its signal, stop takes the spec's stopSignal as given.
const Signal = Type.String({ maxLength: 16 });
const Empty = Type.Object({}, Strict);
const IPv4 = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" });
const NodeName = Type.String({ pattern: NAME_PATTERN, maxLength: 128 });
const Obj = <P extends Record<string, TSchema>>(p: P) => Type.Object(p, Strict);

const ImageConfig = Obj({
  entrypoint: Type.Union([Type.Array(Type.String()), Type.Null()]),
  cmd: Type.Union([Type.Array(Type.String()), Type.Null()]),
  env: Type.Array(Type.String()),
  workdir: Type.String(),
  user: Type.String(),
  stopSignal: Type.Union([Type.String(), Type.Null()]),
  labels: Type.Record(Type.String(), Type.String()),
  volumes: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
});
const RevisionNo = Type.Integer({ minimum: 0, maximum: 1_000_000_000 });
const ImageName = Type.String({ minLength: 1, maxLength: 512 });

/** The payload schema of each event type, at its current version (EVENT_VERSION). */
export const PAYLOADS = {
  ContainerCreated: Obj({
    id: Id,
    name: Type.String({ pattern: NAME_PATTERN }),
    image: Type.String({ minLength: 1, maxLength: 512 }),
    imageDigest: Digest,
    node: Type.String({ pattern: NAME_PATTERN }),
    spec: ContainerSpec,
  }),
  ContainerStartRequested: Obj({ attempt: Type.Optional(Type.Integer({ minimum: 0 })) }),
  ContainerStarted: Obj({ pid: Type.Integer({ minimum: 1 }), startedAt: Time, ip: Type.Optional(IPv4) }),
  ContainerStartFailed: Obj({ error: Text() }),
  ContainerStopRequested: Obj({ signal: Signal, timeoutSec: Type.Integer({ minimum: 0 }) }),
  ContainerKillRequested: Obj({ signal: Signal }),
  ContainerSignaled: Obj({ signal: Signal }),
  ContainerRestartRequested: Obj({ timeoutSec: Type.Integer({ minimum: 0 }) }),
  ContainerExited: Obj({ exitCode: Type.Integer(), oomKilled: Type.Boolean(), exitedAt: Time }),
  ContainerPauseRequested: Empty,
  ContainerPaused: Empty,
  ContainerUnpauseRequested: Empty,
  ContainerUnpaused: Empty,
  ContainerUpdated: Obj({
    restartPolicy: Type.Optional(RestartPolicy),
    resources: Type.Optional(Resources),
    healthcheck: Type.Optional(Type.Union([Healthcheck, Type.Null()])),
    annotations: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.Union([Type.String({ maxLength: 4096 }), Type.Null()]))),
  }),
  ContainerRemoveRequested: Obj({ force: Type.Boolean() }),
  ContainerNetworkDetached: Obj({ ip: IPv4 }),
  ContainerRemoved: Empty,
  ContainerRestartScheduled: Obj({ attempt: Type.Integer({ minimum: 1 }), delayMs: Type.Integer({ minimum: 0 }) }),
  ContainerRestartCancelled: Empty,
  ContainerHealthChanged: Obj({
    status: Type.Union([Type.Literal("starting"), Type.Literal("healthy"), Type.Literal("unhealthy")]),
    failingStreak: Type.Integer({ minimum: 0 }),
    output: Type.Optional(Text()),
  }),
  ContainerRestoreFailed: Obj({ reason: Text() }),
  ContainerActionFailed: Obj({ action: Type.String({ minLength: 1, maxLength: 64 }), error: Text() }),
  ContainerExecStarted: Obj({
    execId: Type.String({ minLength: 1, maxLength: 128 }),
    cmd: Type.Array(Type.String({ maxLength: 131072 }), { minItems: 1, maxItems: 4096 }),
    user: Type.String({ maxLength: 256 }),
  }),
  ContainerExecExited: Obj({ execId: Type.String({ minLength: 1, maxLength: 128 }), exitCode: Type.Integer() }),
  ContainerUpgradeRequested: Obj({
    revision: RevisionNo,
    image: ImageName,
    imageDigest: Digest,
    spec: ContainerSpec,
    healthGateSec: Type.Integer({ minimum: 0, maximum: 3600 }),
  }),
  ContainerRollbackRequested: Obj({ revision: RevisionNo }),
  ContainerRevisionActivated: Obj({ revision: RevisionNo }),
  ContainerUpgradeFailed: Obj({ reason: Text() }),
  ContainerUpgraded: Obj({ fromImage: ImageName, fromDigest: Digest, toImage: ImageName, toDigest: Digest, revision: RevisionNo }),
  ContainerUpgradeRolledBack: Obj({ reason: Text(), revision: RevisionNo, image: ImageName, imageDigest: Digest, fromRevision: RevisionNo }),
  ContainerCheckpointRequested: Obj({
    checkpointId: Id, leaveRunning: Type.Boolean(), tcpEstablished: Type.Boolean(), fileLocks: Type.Boolean(), preDump: Type.Optional(Type.Boolean()), partOf: Type.Optional(Id),
  }),
  ContainerCheckpointed: Obj({ checkpointId: Id, leaveRunning: Type.Boolean(), preDump: Type.Optional(Type.Boolean()), frozenMs: Type.Optional(Type.Integer({ minimum: 0 })) }),
  ContainerRestoreRequested: Obj({ checkpointId: Id }),
  ContainerMigrationRequested: Obj({ checkpointId: Id, fromNode: NodeName, toNode: NodeName, preCopy: Type.Boolean() }),
  ContainerMigrationDumped: Obj({ checkpointId: Id, dumpedAt: Time, frozenMs: Type.Integer({ minimum: 0 }), transfer: Type.Optional(Type.Union([Type.Literal("store"), Type.Literal("direct")])) }),
  ContainerMigrationRestoreFailed: Obj({ checkpointId: Id, node: NodeName, reason: Text() }),
  ContainerMigrated: Obj({ checkpointId: Id, fromNode: NodeName, toNode: NodeName, downtimeMs: Type.Integer({ minimum: 0 }), pid: Type.Integer({ minimum: 1 }), startedAt: Time, ip: Type.Optional(IPv4), pod: Type.Optional(Id), lazyPages: Type.Optional(Type.Boolean()) }),
  MigrationFailed: Obj({ checkpointId: Id, node: NodeName, reason: Text(), compensated: Type.Boolean(), pid: Type.Integer({ minimum: 1 }), startedAt: Time, ip: Type.Optional(IPv4) }),
  ContainerRestored: Obj({ checkpointId: Id, pid: Type.Integer({ minimum: 1 }), startedAt: Time, ip: Type.Optional(IPv4), lazyPages: Type.Optional(Type.Boolean()) }),
  CheckpointCreated: Obj({
    checkpointId: Id,
    container: Id,
    containerName: Type.String({ pattern: NAME_PATTERN }),
    pod: Type.Union([Id, Type.Null()]),
    node: Type.String({ pattern: NAME_PATTERN }),
    image: ImageName,
    imageDigest: Digest,
    spec: ContainerSpec,
    ip: Type.Optional(IPv4),
    sizeBytes: Type.Integer({ minimum: 0 }),
    digest: Type.String({ minLength: 1, maxLength: 128 }),
    durationMs: Type.Integer({ minimum: 0 }),
    frozenMs: Type.Integer({ minimum: 0 }),
    dumpMs: Type.Integer({ minimum: 0 }),
    uploadMs: Type.Integer({ minimum: 0 }),
    leaveRunning: Type.Boolean(),
    tcpEstablished: Type.Boolean(),
    partOf: Type.Optional(Id),
    stats: Type.Optional(Obj({
      freezingMs: Type.Number({ minimum: 0 }), frozenMs: Type.Number({ minimum: 0 }), memdumpMs: Type.Number({ minimum: 0 }),
      memwriteMs: Type.Number({ minimum: 0 }), pagesScanned: Type.Integer({ minimum: 0 }), pagesWritten: Type.Integer({ minimum: 0 }),
    })),
  }),
  PodCheckpointCreated: Obj({
    checkpointId: Id,
    pod: Id,
    podName: Type.String({ pattern: NAME_PATTERN }),
    node: Type.String({ pattern: NAME_PATTERN }),
    podSpec: PodSpec,
    ip: Type.Optional(IPv4),
    members: Type.Array(Obj({ container: Id, name: Type.String({ pattern: NAME_PATTERN }), checkpointId: Id }), { minItems: 1, maxItems: 1024 }),
    sizeBytes: Type.Integer({ minimum: 0 }),
    durationMs: Type.Integer({ minimum: 0 }),
    frozenMs: Type.Integer({ minimum: 0 }),
    leaveRunning: Type.Boolean(),
    tcpEstablished: Type.Boolean(),
  }),
  CheckpointRestored: Obj({ checkpointId: Id, container: Id, durationMs: Type.Integer({ minimum: 0 }) }),
  CheckpointRemoved: Obj({ checkpointId: Id, reason: Text(256) }),
  PodCreated: Obj({ id: Id, name: Type.String({ pattern: NAME_PATTERN }), node: Type.String({ pattern: NAME_PATTERN }), spec: PodSpec }),
  PodStarted: Obj({ ip: Type.Optional(IPv4), containers: Type.Array(Id, { maxItems: 1024 }) }),
  PodStopped: Obj({ containers: Type.Array(Id, { maxItems: 1024 }) }),
  PodRemoved: Obj({ containers: Type.Array(Id, { maxItems: 1024 }) }),
  NameClaimed: Obj({ name: Type.String({ pattern: NAME_PATTERN }), kind: Type.Union([Type.Literal("container"), Type.Literal("pod")]), owner: Id }),
  NameReleased: Obj({ name: Type.String({ pattern: NAME_PATTERN }), kind: Type.Union([Type.Literal("container"), Type.Literal("pod")]), owner: Id }),
  PodCheckpointRequested: Obj({
    checkpointId: Id, leaveRunning: Type.Boolean(), tcpEstablished: Type.Boolean(), fileLocks: Type.Boolean(),
    members: Type.Array(Id, { minItems: 1, maxItems: 1024 }), pausedBefore: Type.Array(Id, { maxItems: 1024 }),
  }),
  PodCheckpointed: Obj({ checkpointId: Id, leaveRunning: Type.Boolean() }),
  PodCheckpointFailed: Obj({ checkpointId: Id, reason: Text() }),
  PodRestored: Obj({ checkpointId: Id, containers: Type.Array(Id, { maxItems: 1024 }) }),
  PodMigrationRequested: Obj({ checkpointId: Id, fromNode: NodeName, toNode: NodeName, preCopy: Type.Boolean() }),
  PodMigrationDumped: Obj({ checkpointId: Id, dumpedAt: Time, frozenAt: Time }),
  PodMigrationRestoreFailed: Obj({ checkpointId: Id, node: NodeName, reason: Text() }),
  PodMigrated: Obj({ checkpointId: Id, fromNode: NodeName, toNode: NodeName, downtimeMs: Type.Integer({ minimum: 0 }), ip: Type.Optional(IPv4), containers: Type.Array(Id, { maxItems: 1024 }) }),
  PodMigrationFailed: Obj({ checkpointId: Id, node: NodeName, reason: Text(), compensated: Type.Boolean() }),
  ImageImported: Obj({
    name: Type.String({ minLength: 1, maxLength: 256 }),
    digest: Digest,
    sizeBytes: Type.Integer({ minimum: 0 }),
    config: ImageConfig,
  }),
  ImageRemoved: Obj({ name: Type.String({ minLength: 1, maxLength: 256 }), digest: Digest }),
  NodeStarted: Obj({ httpUrl: Type.String({ maxLength: 1024 }), version: Type.String({ maxLength: 128 }), dataRoot: Type.String({ maxLength: 4096 }) }),
  NodeRestored: Obj({
    containers: Type.Integer({ minimum: 0 }),
    durationMs: Type.Integer({ minimum: 0 }),
    failed: Type.Integer({ minimum: 0 }),
    orphans: Type.Array(Type.String()),
  }),
  NodeOffline: Obj({ since: Type.String({ maxLength: 64 }), started: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 10_000 }) }),
  NodeOnline: Obj({ since: Type.String({ maxLength: 64 }), at: Type.String({ maxLength: 64 }), spanMs: Type.Integer({ minimum: 0 }), facts: Type.Integer({ minimum: 0 }) }),
} satisfies Record<EventType, TSchema>;

/** The schema version each type is read at; anything else is quarantined. */
export const VERSIONS: Readonly<Record<EventType, number>> = Object.fromEntries(Object.keys(PAYLOADS).map((t) => [t, 1])) as Record<EventType, number>;

/** The whole event as stored: the envelope (API.md) around one type's payload. */
export function eventSchema(type: EventType): TSchema {
  return envelopeSchema(type, PAYLOADS[type]);
}

/** The envelope around any payload schema (an aggregate's own types too). */
export function envelopeSchema(type: string, payload: TSchema): TSchema {
  return Obj({
    type: Type.Literal(type),
    v: Type.Integer(),
    eventId: Type.String({ minLength: 1, maxLength: 256 }),
    at: Time,
    node: Type.String({ minLength: 1, maxLength: 256 }),
    actor: Type.String({ minLength: 1, maxLength: 512 }),
    correlationId: Type.String({ minLength: 1, maxLength: 256 }),
    causationId: Type.Union([Type.String({ minLength: 1, maxLength: 256 }), Type.Null()]),
    /** sha256 of the previous message of the subject; null for its first; absent on logs from before the chain. */
    // Its value is checked by the audit, which compares it with the hash it computes.
    prevHash: Type.Optional(Type.Union([Type.String({ minLength: 64, maxLength: 64 }), Type.Null()])),
    data: payload,
  });
}
