// The offline checkpointer's decision (bootkube's pod-checkpointer state table) as one pure
// function: for a container with a local checkpoint, what the daemon does with it now. The inputs
// are facts the caller gathers (the log's answer or the last one this node folded, the host, the
// offline span's journal, a clock); the output is an action as data that one loop applies, like
// the restart policy's. Table-tested at t0 and at t0 + grace in test/unit/checkpointer.spec.ts.
//
// Three rules carry the safety of it (issue 11): a copy is started only when the last thing this
// node knew says this node owns the container (so nothing runs twice in the cluster); a container
// the log says was removed or moved away is stopped at once but its copy is deleted only after the
// grace period; and a copy is never deleted while its parent (the log's record) is alive.

/**
 * What the log says of the container: when it is reachable (and caught up), its answer now; when
 * not, the last thing this node folded before it lost the log (at boot, the local copy's own
 * record: owned unless it says it is retiring). `unknown`: no answer yet (not caught up, or no
 * record at all offline).
 */
export type ParentState = "owned" | "migrated" | "removed" | "unknown";

/** bootkube's two checkpoint states: `active` was started from the local copy during this offline span. */
export type CopyState = "active" | "inactive";

export interface CheckpointerInput {
  parent: ParentState;
  logReachable: boolean;
  /** Its process runs on this host now (whoever started it). */
  runningLocally: boolean;
  copy: CopyState;
  /**
   * How long ago the parent was first seen gone (removed or migrated away), in ms; null when it
   * was not (or the caller has no time for it: then the grace starts now).
   */
  goneForMs: number | null;
  graceMs: number;
}

export type CheckpointAction =
  /** Start it from its local copy (offline only). */
  | "start"
  /** Stop its process; keep the copy (the grace has not passed). */
  | "stop"
  /** Stop it if it runs, then delete its local copy. */
  | "remove"
  /** The log is back and it is still ours: normal management takes it from here. */
  | "handBack"
  /** Nothing to do yet. */
  | "keep";

export interface CheckpointerDecision {
  action: CheckpointAction;
  reason: string;
}

/** bootkube's default `--checkpoint-grace-period`. */
export const DEFAULT_GRACE_MS = 60_000;

const act = (action: CheckpointAction, reason: string): CheckpointerDecision => ({ action, reason });

export function decideCheckpoint(i: CheckpointerInput): CheckpointerDecision {
  switch (i.parent) {
    case "migrated":
    case "removed": {
      // A fact of the log holds whether it is reachable now or not: a removal is final, and a
      // migration back would be a newer fact (and a new copy). So the same answer both ways.
      const gone = i.parent === "removed" ? "removed" : "moved to another node";
      if ((i.goneForMs ?? 0) >= Math.max(0, i.graceMs)) return act("remove", `the log says it was ${gone}, and the grace period is over`);
      if (i.runningLocally) return act("stop", `the log says it was ${gone}: it must not run here; its copy stays until the grace period is over`);
      return act("keep", `the log says it was ${gone}; its copy stays until the grace period is over`);
    }
    case "owned":
      if (i.logReachable) return act("handBack", "the log is back and this node owns it");
      if (i.runningLocally) return act("keep", "it runs already");
      // An active copy that stopped ran from its copy in this span: its restart policy decides
      // (journaled), not the checkpointer, which starts a copy once per offline span.
      if (i.copy === "active") return act("keep", "it was started from its copy in this offline span and stopped: its restart policy decides");
      return act("start", "the log cannot be reached and the last thing this node knew says it owns it");
    case "unknown":
      // Never start, stop or delete on no knowledge: only a known owner starts it, only a known
      // removal or move retires it.
      return act("keep", i.logReachable ? "the log has not answered for it yet" : "the log cannot be reached and nothing says this node owns it");
    default: {
      const _never: never = i.parent;
      return act("keep", `unknown parent state '${String(_never)}'`);
    }
  }
}
