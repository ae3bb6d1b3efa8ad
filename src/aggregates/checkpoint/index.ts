// The checkpoint aggregate: one record per CRIU checkpoint kept in the object store, on
// `berth.ev.checkpoint.<id>`, so that listing, restores and the retention rule come from the log.
// It is written by the owning node's executor once the archive is stored (the container's
// checkpoint saga), and by `checkpoint rm` or the retention rule when it goes.
import type { CheckpointCreatedData, CheckpointEvent } from "../../events/types.js";
import { alreadyExists, notFound } from "../../shared/errors.js";
import type { AggregateCommands, AggregateState, Decider } from "../decider.js";

export interface CheckpointState extends AggregateState, Omit<CheckpointCreatedData, "checkpointId"> {
  createdAt: string;
  /** How often it was restored, and into which container last. */
  restores: number;
  lastRestoredInto: string | null;
  removed: boolean;
}

export type CheckpointCommand =
  | { type: "Create"; data: CheckpointCreatedData }
  | { type: "Restored"; container: string; durationMs: number }
  | { type: "Remove"; reason: string };

export const checkpointDecider: Decider<CheckpointState, CheckpointCommand, CheckpointEvent> = {
  kind: "checkpoint",
  owns: (type): type is CheckpointEvent["type"] => type.startsWith("Checkpoint"),
  decide(cmd, s) {
    if (cmd.type === "Create") {
      if (s) throw alreadyExists(`checkpoint ${cmd.data.checkpointId} exists`);
      return [{ type: "CheckpointCreated", data: cmd.data }];
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
    if (!s) return null;
    switch (e.type) {
      case "CheckpointRestored":
        return { ...s, version: e.seq, restores: s.restores + 1, lastRestoredInto: e.data.container };
      case "CheckpointRemoved":
        return { ...s, version: e.seq, removed: true };
    }
  },
  refuses(s, e) {
    if (e.type === "CheckpointCreated") return s ? `CheckpointCreated for checkpoint ${s.id}, which exists` : null;
    if (!s || s.removed) return `${e.type} for a checkpoint that does not exist`;
    return null;
  },
  gone: (s) => s.removed,
};

export type CheckpointCommands = AggregateCommands<CheckpointState, CheckpointCommand, CheckpointEvent>;

/** How many checkpoints of one container are kept (the newest); older ones are removed by themselves. */
export const DEFAULT_KEEP = 3;

/** Pure: which of a container's checkpoints the retention rule removes (all but the newest `keep`). */
export function retire(all: readonly Pick<CheckpointState, "id" | "container" | "version" | "removed">[], container: string, keep = DEFAULT_KEEP): string[] {
  return all
    .filter((c) => c.container === container && !c.removed)
    .sort((a, b) => b.version - a.version)
    .slice(keep)
    .map((c) => c.id);
}
