// The read model's container state as clients see it (the contract's ContainerView): hides
// bookkeeping (stoppedByUser, removed, the pending intent's payload).
import type { ContainerState } from "../aggregates/container/state.js";
import type { CheckpointView, ContainerView, PodView } from "../contract/views.js";
import { isPodCheckpoint, type CheckpointState } from "../aggregates/checkpoint/index.js";
import { DEFAULT_SHARE, type PodState } from "../aggregates/pod/index.js";
import { networkMode } from "../shared/spec.js";

export { CheckpointView, ContainerView, PodView, byCreated } from "../contract/views.js";

export function toCheckpointView(s: CheckpointState): CheckpointView {
  const common = {
    checkpointId: s.id, node: s.node, createdAt: s.createdAt, sizeBytes: s.sizeBytes, durationMs: s.durationMs, frozenMs: s.frozenMs,
    leaveRunning: s.leaveRunning, tcpEstablished: s.tcpEstablished, restores: s.restores,
  };
  if (isPodCheckpoint(s)) {
    return {
      ...common, kind: "pod", container: null, containerName: null, pod: s.pod, podName: s.podName, partOf: null,
      members: s.members, image: null, imageDigest: null, digest: null,
    };
  }
  return {
    ...common, kind: "container", container: s.container, containerName: s.containerName, pod: s.pod, podName: null, partOf: s.partOf ?? null,
    image: s.image, imageDigest: s.imageDigest, digest: s.digest,
  };
}

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
    networkMode: c.spec.pod ? "pod" : networkMode(c.spec),
    ip: c.ip,
    ports: c.spec.network?.ports ?? [],
    pod: c.spec.pod ?? null,
    revision: c.revision,
    previous: c.previous ? { revision: c.previous.revision, image: c.previous.image, imageDigest: c.previous.imageDigest } : null,
    checkpointed: c.checkpointed !== null,
    checkpoint: c.checkpointed,
  };
  if (withSpec) v.spec = c.spec;
  return v;
}


export function toPodView(p: PodState, members: readonly ContainerState[]): PodView {
  const running = members.some((m) => m.state === "running" || m.state === "paused");
  const ran = members.some((m) => m.startedAt !== null);
  return {
    id: p.id,
    name: p.name,
    state: running ? "running" : ran ? "exited" : "created",
    node: p.node,
    ip: p.ip ?? members.find((m) => m.ip)?.ip ?? null,
    ports: p.spec.network?.ports ?? [],
    share: p.spec.share ?? [...DEFAULT_SHARE],
    containers: members.map((m) => ({ id: m.id, name: m.name, state: m.state })),
    labels: { ...(p.spec.labels ?? {}) },
    createdAt: p.createdAt,
    version: p.version,
    pending: p.migration ? "migration" : p.checkpoint ? "checkpoint" : null,
    migratingTo: p.migration?.toNode ?? null,
    lastError: p.lastError ?? null,
    checkpointed: !!p.checkpointed,
    checkpoint: p.checkpointed ?? null,
  };
}
