// What clients see of a container (API.md `Container`). The TypeBox schema is both the HTTP
// response serializer and the OpenAPI component; the CLI reads the same type.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { ContainerSpec, PortMapping, RestartPolicy } from "../shared/spec.js";
import { LIFECYCLE_STATES } from "../shared/container-states.js";

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const StrMap = Type.Record(Type.String(), Type.String());

export const ContainerStateName = Type.Union(LIFECYCLE_STATES.map((s) => Type.Literal(s)));

export const ContainerView = Type.Object(
  {
    id: Type.String({ description: "64 hex characters" }),
    name: Type.String(),
    image: Type.String(),
    imageDigest: Type.String(),
    state: ContainerStateName,
    node: Type.String({ description: "the owning node" }),
    pid: Nullable(Type.Integer()),
    exitCode: Nullable(Type.Integer()),
    oomKilled: Type.Boolean(),
    restartCount: Type.Integer(),
    health: Type.Union([
      Type.Literal("none"),
      Type.Literal("starting"),
      Type.Literal("healthy"),
      Type.Literal("unhealthy"),
    ]),
    createdAt: Type.String({ format: "date-time" }),
    startedAt: Nullable(Type.String({ format: "date-time" })),
    finishedAt: Nullable(Type.String({ format: "date-time" })),
    labels: StrMap,
    annotations: StrMap,
    restartPolicy: RestartPolicy,
    version: Type.Integer({ description: "stream sequence of the container's last event" }),
    pending: Nullable(Type.String({ description: "the intent event waiting for its outcome" })),
    lastError: Nullable(Type.String()),
    networkMode: Type.Union([Type.Literal("none"), Type.Literal("host"), Type.Literal("bridge"), Type.Literal("pod")]),
    ip: Nullable(Type.String({ description: "its address on the node's bridge (kept while stopped)" })),
    ports: Type.Array(PortMapping),
    pod: Nullable(Type.String({ description: "the pod's id" })),
    revision: Type.Integer({ description: "0 at create; each settled upgrade makes the next" }),
    previous: Nullable(
      Type.Object(
        { revision: Type.Integer(), image: Type.String(), imageDigest: Type.String() },
        { additionalProperties: false, description: "the revision `rollback` returns to (its rw layer is kept)" },
      ),
    ),
    checkpointed: Type.Boolean({ description: "its process was frozen into a checkpoint (restore it with that checkpoint's id)" }),
    checkpoint: Nullable(Type.String({ description: "the checkpoint its process was frozen into" })),
    spec: Type.Optional(ContainerSpec),
    localCheckpoint: Type.Optional(
      Nullable(
        Type.Object({
          node: Type.String({ description: "the node that keeps it" }),
          writtenAt: Nullable(Type.String({ description: "when its copy was last written (known to that node's daemon; null from another node's)" })),
        }, { description: "berth.io/checkpoint=true: a sanitized local copy kept on its node, started from there when the node boots and the log cannot be reached" }),
      ),
    ),
  },
  { additionalProperties: false },
);
export type ContainerView = Static<typeof ContainerView>;

/** A checkpoint as `GET /v1/checkpoints` lists it (API.md). */
export const CheckpointView = Type.Object(
  {
    checkpointId: Type.String(),
    kind: Type.Union([Type.Literal("container"), Type.Literal("pod")], { description: "a container's checkpoint, or a pod's (its members' checkpoints together)" }),
    container: Nullable(Type.String({ description: "the checkpointed container's id (null for a pod's)" })),
    containerName: Nullable(Type.String()),
    pod: Nullable(Type.String()),
    podName: Nullable(Type.String()),
    partOf: Nullable(Type.String({ description: "the pod checkpoint this container checkpoint belongs to" })),
    members: Type.Optional(Type.Array(Type.Object({ container: Type.String(), name: Type.String(), checkpointId: Type.String() }, { additionalProperties: false }))),
    node: Type.String(),
    image: Nullable(Type.String()),
    imageDigest: Nullable(Type.String()),
    createdAt: Type.String({ format: "date-time" }),
    sizeBytes: Type.Integer({ description: "a pod's: every member's archive together" }),
    digest: Nullable(Type.String({ description: "the archive's SHA-256 in the object store (SHA-256=<base64url>); null for a pod's" })),
    durationMs: Type.Integer(),
    frozenMs: Type.Integer(),
    leaveRunning: Type.Boolean(),
    tcpEstablished: Type.Boolean(),
    restores: Type.Integer(),
  },
  { additionalProperties: false },
);
export type CheckpointView = Static<typeof CheckpointView>;

/** `docker ps` order: oldest first, ties broken by id so the order is stable. */
export function byCreated(a: ContainerView, b: ContainerView): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** What clients see of a pod (API.md `Pod`): its state follows its members (running when any runs). */
export const PodView = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    state: Type.Union([Type.Literal("created"), Type.Literal("running"), Type.Literal("exited")]),
    node: Type.String(),
    ip: Nullable(Type.String()),
    ports: Type.Array(PortMapping),
    share: Type.Array(Type.String()),
    containers: Type.Array(Type.Object({ id: Type.String(), name: Type.String(), state: ContainerStateName }, { additionalProperties: false })),
    labels: StrMap,
    createdAt: Type.String({ format: "date-time" }),
    version: Type.Integer(),
    pending: Nullable(Type.String({ description: "the pod's own saga under way (\"checkpoint\" or \"migration\"), else null" })),
    migratingTo: Nullable(Type.String({ description: "the node a migration under way moves it to" })),
    lastError: Nullable(Type.String({ description: "why its last migration failed (cleared by one that succeeds)" })),
    checkpointed: Type.Boolean({ description: "its members were stopped by a pod checkpoint (and wait for pod restore)" }),
    checkpoint: Nullable(Type.String({ description: "that pod checkpoint's id" })),
  },
  { additionalProperties: false },
);
export type PodView = Static<typeof PodView>;
