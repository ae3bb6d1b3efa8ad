// The read model's container state as clients see it (the contract's ContainerView): hides
// bookkeeping (stoppedByUser, removed, the pending intent's payload).
import type { ContainerState } from "../aggregates/container/state.js";
import type { ContainerView } from "../contract/views.js";
import { networkMode } from "../shared/spec.js";

export { ContainerView, byCreated } from "../contract/views.js";

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
    networkMode: networkMode(c.spec),
    ip: c.ip,
    ports: c.spec.network?.ports ?? [],
    pod: c.spec.pod ?? null,
  };
  if (withSpec) v.spec = c.spec;
  return v;
}

