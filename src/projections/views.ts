// What clients see of a container (API.md `Container`): a stable projection of ContainerState
// that hides bookkeeping (stoppedByUser, removed, the pending intent's payload). The TypeBox
// schema is both the HTTP response serializer and the OpenAPI component.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { ContainerSpec, RestartPolicy } from "../shared/spec.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { LIFECYCLE_STATES } from "../aggregates/container/transitions.js";

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
    spec: Type.Optional(ContainerSpec),
  },
  { additionalProperties: false },
);
export type ContainerView = Static<typeof ContainerView>;

export function toContainerView(c: ContainerState, withSpec: boolean): ContainerView {
  const v: ContainerView = {
    id: c.id,
    name: c.name,
    image: c.image,
    imageDigest: c.imageDigest,
    state: c.state,
    node: c.node,
    pid: c.pid,
    exitCode: c.exitCode,
    oomKilled: c.oomKilled,
    restartCount: c.restartCount,
    health: c.health,
    createdAt: c.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    labels: { ...c.labels },
    annotations: { ...c.annotations },
    restartPolicy: c.restartPolicy,
    version: c.version,
    pending: c.pending?.type ?? null,
    lastError: c.lastError,
  };
  if (withSpec) v.spec = c.spec;
  return v;
}

/** `docker ps` order: oldest first, ties broken by id so the order is stable. */
export function byCreated(a: ContainerView, b: ContainerView): number {
  return a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
