// The pod aggregate: a name, an owning node and the namespaces its members share (pinned on that
// node, with one bridge attachment and one cgroup). Its members are containers with `spec.pod`
// naming it; what the pod does to them (start, stop, remove) is a sequence of their own commands,
// and the pod's events record the sequence's end. Its running state follows its members
// (projections/pods.ts), not this aggregate.
import { checkCheckpointAnnotation } from "../../shared/checkpoint-annotation.js";
import type { PodCheckpointOptions, PodEvent } from "../../events/types.js";
import { alreadyExists, conflict, invalid, notFound } from "../../shared/errors.js";
import type { PodNamespace, PodSpec } from "../../shared/spec.js";
import type { AggregateCommands, AggregateState, Decider } from "../decider.js";

export interface PodState extends AggregateState {
  name: string;
  node: string;
  spec: PodSpec;
  createdAt: string;
  /** The pod's IP from its last start (kept: the sandbox lives until the pod is removed). */
  ip: string | null;
  removed: boolean;
  /** The pod checkpoint saga under way (PodCheckpointRequested, not yet answered). */
  checkpoint?: PodCheckpointSaga | null;
  /** The pod checkpoint that stopped its members, until the pod starts or is restored again. */
  checkpointed?: string | null;
  /** The last pod checkpoint that failed, and why (a retried request answers with it). */
  checkpointFailed?: { checkpointId: string; reason: string } | null;
  /** The pod migration under way (PodMigrationRequested, not yet PodMigrated or PodMigrationFailed). */
  migration?: PodMigrationSaga | null;
  /** Why its last migration failed (cleared by the next one that succeeds). */
  lastError?: string | null;
  /** Its last migration here: its members' own ContainerMigrated follow the pod's. */
  migratedFrom?: { checkpointId: string; fromNode: string; containers: string[]; eventId: string } | null;
}

export interface PodMigrationSaga {
  /** The pod checkpoint that carries it (its id derives from the migration's request). */
  checkpointId: string;
  fromNode: string;
  toNode: string;
  /** Pre-dump rounds of every member while it runs, before the freeze. */
  preCopy: boolean;
  /** The intent's event id. */
  eventId: string;
  dumpedAt: string | null;
  frozenAt: string | null;
  /** The target's reason, once it could not restore it: the source's turn to restore it. */
  restoreFailed: string | null;
}

export interface PodCheckpointSaga extends PodCheckpointOptions {
  checkpointId: string;
  /** The intent's event id: the saga's member commands are caused by it. */
  eventId: string;
  members: string[];
  pausedBefore: string[];
}

export type PodCommand =
  | { type: "Create"; data: { id: string; name: string; node: string; spec: PodSpec } }
  | { type: "Started"; ip: string | null; containers: string[] }
  | { type: "Stopped"; containers: string[] }
  | { type: "Remove"; containers: string[] }
  | { type: "Checkpoint"; checkpointId: string; options: PodCheckpointOptions; members: string[]; pausedBefore: string[] }
  | { type: "Restored"; checkpointId: string; containers: string[] }
  | { type: "Migrate"; checkpointId: string; toNode: string; preCopy: boolean };

export const DEFAULT_SHARE: readonly PodNamespace[] = ["net", "ipc", "uts"];

/** A pod spec's rules a schema cannot say: share is a set of net/ipc/uts with net in it. */
export function checkPodSpec(spec: PodSpec): void {
  checkCheckpointAnnotation(spec.annotations);
  const share = spec.share ?? DEFAULT_SHARE;
  for (const k of share) {
    if (!DEFAULT_SHARE.includes(k as PodNamespace)) throw invalid(`pods share net, ipc and uts; '${k}' is not supported`);
  }
  if (new Set(share).size !== share.length) throw invalid("share lists a namespace twice");
  if (!share.includes("net")) throw invalid("a pod's members always share its network namespace: share must include 'net'");
  if (spec.network?.mode === "host") throw invalid("a pod cannot use the host's network");
}

export const podDecider: Decider<PodState, PodCommand, PodEvent> = {
  kind: "pod",
  owns: (type): type is PodEvent["type"] => type.startsWith("Pod") && type !== "PodCheckpointCreated",
  decide(cmd, s) {
    if (cmd.type === "Create") {
      if (s) throw alreadyExists(`pod ${s.name} exists`);
      checkPodSpec(cmd.data.spec);
      return [{ type: "PodCreated", data: cmd.data }];
    }
    if (!s) throw notFound("no such pod");
    switch (cmd.type) {
      case "Started":
        return [{ type: "PodStarted", data: cmd.ip ? { ip: cmd.ip, containers: cmd.containers } : { containers: cmd.containers } }];
      case "Stopped":
        return [{ type: "PodStopped", data: { containers: cmd.containers } }];
      case "Remove":
        return [{ type: "PodRemoved", data: { containers: cmd.containers } }];
      case "Checkpoint":
        if (s.checkpoint) throw conflict(`a checkpoint of pod ${s.name} is under way`);
        if (!cmd.members.length) throw conflict(`pod ${s.name} has no running container to checkpoint`);
        return [{ type: "PodCheckpointRequested", data: { checkpointId: cmd.checkpointId, ...cmd.options, members: cmd.members, pausedBefore: cmd.pausedBefore } }];
      case "Restored":
        return [{ type: "PodRestored", data: { checkpointId: cmd.checkpointId, containers: cmd.containers } }];
      case "Migrate":
        if (s.migration) throw conflict(`a migration of pod ${s.name} to ${s.migration.toNode} is under way`);
        if (s.checkpoint) throw conflict(`a checkpoint of pod ${s.name} is under way`);
        if (cmd.toNode === s.node) throw conflict(`pod ${s.name} is on node ${s.node} already`);
        return [{ type: "PodMigrationRequested", data: { checkpointId: cmd.checkpointId, fromNode: s.node, toNode: cmd.toNode, preCopy: cmd.preCopy } }];
    }
  },
  evolve(s, e) {
    if (e.type === "PodCreated") {
      const d = e.data;
      return { id: d.id, name: d.name, node: d.node, spec: d.spec, createdAt: e.at, ip: null, removed: false, version: e.seq };
    }
    if (!s) return null;
    const n: PodState = { ...s, version: e.seq };
    switch (e.type) {
      case "PodStarted":
        if (e.data.ip) n.ip = e.data.ip;
        n.checkpointed = null;
        break;
      case "PodRemoved":
        n.removed = true;
        break;
      case "PodCheckpointRequested": {
        const { checkpointId, leaveRunning, tcpEstablished, fileLocks, members, pausedBefore } = e.data;
        n.checkpoint = { checkpointId, eventId: e.eventId, leaveRunning, tcpEstablished, fileLocks, members, pausedBefore };
        break;
      }
      case "PodCheckpointed":
        n.checkpoint = null;
        if (!e.data.leaveRunning) n.checkpointed = e.data.checkpointId;
        break;
      case "PodCheckpointFailed":
        n.checkpoint = null;
        n.checkpointFailed = { checkpointId: e.data.checkpointId, reason: e.data.reason };
        break;
      case "PodRestored":
        n.checkpointed = null;
        break;
      case "PodMigrationRequested": {
        const { checkpointId, fromNode, toNode, preCopy } = e.data;
        n.migration = { checkpointId, fromNode, toNode, preCopy, eventId: e.eventId, dumpedAt: null, frozenAt: null, restoreFailed: null };
        break;
      }
      case "PodMigrationDumped":
        if (n.migration) n.migration = { ...n.migration, dumpedAt: e.data.dumpedAt, frozenAt: e.data.frozenAt };
        break;
      case "PodMigrationRestoreFailed":
        if (n.migration) n.migration = { ...n.migration, restoreFailed: e.data.reason };
        break;
      case "PodMigrated":
        // Ownership of the pod (its sandbox) moves only here; each member's moved with its ContainerMigrated.
        n.node = e.data.toNode;
        n.spec = { ...s.spec, node: e.data.toNode, ...(s.spec.network ? { network: { ...s.spec.network, ip: undefined } } : {}) };
        n.ip = e.data.ip ?? null;
        n.migration = null;
        n.checkpointed = null;
        n.lastError = null;
        n.migratedFrom = { checkpointId: e.data.checkpointId, fromNode: e.data.fromNode, containers: e.data.containers, eventId: s.migration?.eventId ?? e.eventId };
        break;
      case "PodMigrationFailed":
        n.migration = null;
        n.lastError = `migration: ${e.data.reason}`;
        break;
    }
    return n;
  },
  refuses: (s, e) => {
    if (e.type === "PodCreated") return s ? `PodCreated for pod ${s.id}, which exists` : null;
    if (!s) return `${e.type} for a pod that does not exist (never created, or removed)`;
    if (e.type === "PodCheckpointRequested" && s.checkpoint) return `PodCheckpointRequested while checkpoint ${s.checkpoint.checkpointId} is under way`;
    if ((e.type === "PodCheckpointed" || e.type === "PodCheckpointFailed") && s.checkpoint?.checkpointId !== e.data.checkpointId) {
      return `${e.type} for checkpoint ${e.data.checkpointId}, which is not the one under way`;
    }
    // Every pod verb is carried out by the pod's own daemon; a migration's target writes its two facts.
    if (e.type === "PodMigrated" ? !(e.node === e.data.toNode && s.migration?.toNode === e.node)
      : e.type === "PodMigrationRestoreFailed" ? !(e.node === s.node || e.node === s.migration?.toNode)
      : e.node !== s.node) {
      return `${e.type} written by node ${e.node}, which is not the pod's owner ${s.node}${e.type.startsWith("PodMigrat") ? " or its migration's target" : ""}`;
    }
    if (e.type === "PodMigrationRequested" && s.migration) return `PodMigrationRequested while migration ${s.migration.checkpointId} is under way`;
    if (e.type.startsWith("PodMigrat") && e.type !== "PodMigrationRequested" && s.migration?.checkpointId !== (e.data as { checkpointId: string }).checkpointId) {
      return `${e.type} for migration ${(e.data as { checkpointId: string }).checkpointId}, which is not the one under way`;
    }
    return null;
  },
  gone: (s) => s.removed,
};

export type PodCommands = AggregateCommands<PodState, PodCommand, PodEvent>;
