// The checkpoint aggregate: one record per CRIU checkpoint kept in the object store, on
// `berth.ev.checkpoint.<id>`, so that listing, restores and the retention rule come from the log.
// It is written by the owning node's executor once the archive is stored (the container's
// checkpoint saga), and by `checkpoint rm` or the retention rule when it goes. A pod checkpoint
// (PodCheckpointCreated) is a record of the same kind listing its members' own checkpoints.
import type { CheckpointCreatedData, CheckpointEvent, PodCheckpointCreatedData } from "../../events/types.js";
import { alreadyExists, notFound } from "../../shared/errors.js";
import type { AggregateCommands, AggregateState, Decider } from "../decider.js";

interface RecordState extends AggregateState {
  createdAt: string;
  /** How often it was restored, and into which container (or pod) last. */
  restores: number;
  lastRestoredInto: string | null;
  removed: boolean;
}
/** One container's checkpoint (`kind` is absent in states folded before pod checkpoints existed). */
export interface ContainerCheckpointState extends RecordState, Omit<CheckpointCreatedData, "checkpointId"> {
  kind?: "container";
}
export interface PodCheckpointState extends RecordState, Omit<PodCheckpointCreatedData, "checkpointId"> {
  kind: "pod";
}
export type CheckpointState = ContainerCheckpointState | PodCheckpointState;

export const isPodCheckpoint = (s: CheckpointState): s is PodCheckpointState => s.kind === "pod";

export type CheckpointCommand =
  | { type: "Create"; data: CheckpointCreatedData }
  | { type: "CreatePod"; data: PodCheckpointCreatedData }
  | { type: "Restored"; container: string; durationMs: number }
  | { type: "Remove"; reason: string };

export const checkpointDecider: Decider<CheckpointState, CheckpointCommand, CheckpointEvent> = {
  kind: "checkpoint",
  owns: (type): type is CheckpointEvent["type"] => type.startsWith("Checkpoint") || type === "PodCheckpointCreated",
  decide(cmd, s) {
    if (cmd.type === "Create" || cmd.type === "CreatePod") {
      if (s) throw alreadyExists(`checkpoint ${cmd.data.checkpointId} exists`);
      return cmd.type === "Create" ? [{ type: "CheckpointCreated", data: cmd.data }] : [{ type: "PodCheckpointCreated", data: cmd.data }];
    }
    if (!s || s.removed) throw notFound("no such checkpoint");
    switch (cmd.type) {
      case "Restored":
        return [{ type: "CheckpointRestored", data: { checkpointId: s.id, container: cmd.container, durationMs: cmd.durationMs } }];
      case "Remove":
        return [{ type: "CheckpointRemoved", data: { checkpointId: s.id, reason: cmd.reason } }];
    }
  },
  evolve(s, e) {
    if (e.type === "CheckpointCreated") {
      const { checkpointId, ...rest } = e.data;
      return { ...rest, id: checkpointId, version: e.seq, createdAt: e.at, restores: 0, lastRestoredInto: null, removed: false };
    }
    if (e.type === "PodCheckpointCreated") {
      const { checkpointId, ...rest } = e.data;
      return { ...rest, kind: "pod", id: checkpointId, version: e.seq, createdAt: e.at, restores: 0, lastRestoredInto: null, removed: false };
    }
    if (!s) return null;
    switch (e.type) {
      case "CheckpointRestored":
        return { ...s, version: e.seq, restores: s.restores + 1, lastRestoredInto: e.data.container };
      case "CheckpointRemoved":
        return { ...s, version: e.seq, removed: true };
    }
  },
  refuses(s, e) {
    if (e.type === "CheckpointCreated" || e.type === "PodCheckpointCreated") return s ? `${e.type} for checkpoint ${s.id}, which exists` : null;
    if (!s || s.removed) return `${e.type} for a checkpoint that does not exist`;
    return null;
  },
  gone: (s) => s.removed,
};

export type CheckpointCommands = AggregateCommands<CheckpointState, CheckpointCommand, CheckpointEvent>;

/** How many checkpoints of one container are kept (the newest); older ones are removed by themselves. */
export const DEFAULT_KEEP = 3;

type Retirable = { id: string; version: number; removed: boolean; kind?: "container" | "pod"; container?: string; pod?: string | null; partOf?: string };

/**
 * Pure: which of a container's checkpoints the retention rule removes (all but the newest
 * `keep`). A pod checkpoint's members are not counted: they go with their pod checkpoint.
 */
export function retire(all: readonly Retirable[], container: string, keep = DEFAULT_KEEP): string[] {
  return newestFirst(all.filter((c) => c.kind !== "pod" && c.container === container && !c.partOf && !c.removed)).slice(keep);
}

/** Pure: the same for a pod's checkpoints (each removed with its members' checkpoints). */
export function retirePod(all: readonly Retirable[], pod: string, keep = DEFAULT_KEEP): string[] {
  return newestFirst(all.filter((c) => c.kind === "pod" && c.pod === pod && !c.removed)).slice(keep);
}

const newestFirst = (xs: Retirable[]) => xs.sort((a, b) => b.version - a.version).map((c) => c.id);
