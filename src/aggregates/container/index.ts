// The container aggregate as the framework sees it: one Decider value. Its parts live beside it:
// state.ts (state and evolve), transitions.ts (the table), decider.ts (decide).
import type { ContainerEvent } from "../../events/types.js";
import type { AggregateCommands, Decider } from "../decider.js";
import { decide, type ContainerCommand } from "./decider.js";
import { evolve, type ContainerState } from "./state.js";
import { nextState } from "./transitions.js";

/**
 * What only the owning node's host can know (its executor, recovery, health checks, restart
 * timers and exec sessions report it). An intent or a plain decision may come from any daemon;
 * these may not, whatever NATS lets a node's user publish (nats-roles.ts: events' subjects name
 * the aggregate, not its node).
 */
export const OWNER_FACTS: ReadonlySet<string> = new Set([
  "ContainerStarted", "ContainerStartFailed", "ContainerExited", "ContainerSignaled", "ContainerPaused", "ContainerUnpaused",
  "ContainerHealthChanged", "ContainerRestored", "ContainerRestoreFailed", "ContainerCheckpointed", "ContainerExecStarted",
  "ContainerExecExited", "ContainerRemoved", "ContainerRevisionActivated", "ContainerUpgraded", "ContainerUpgradeFailed",
  "ContainerUpgradeRolledBack", "ContainerActionFailed", "ContainerRestartScheduled", "ContainerMigrationDumped", "MigrationFailed",
]);

/** Null when the node that wrote `e` may write it; else why not. A migration's target writes its own two facts. */
function notTheOwners(s: ContainerState, e: ContainerEvent): string | null {
  const from = (who: string) => `${e.type} written by node ${e.node}, which is not ${who}`;
  if (e.type === "ContainerMigrated") return e.node === e.data.toNode && (!s.migration || s.migration.toNode === e.node) ? null : from("its migration's target");
  if (e.type === "ContainerMigrationRestoreFailed") return e.node === s.migration?.toNode || e.node === s.node ? null : from("its migration's target or its owner");
  return OWNER_FACTS.has(e.type) && e.node !== s.node ? from(`its owner ${s.node}`) : null;
}

export const containerDecider: Decider<ContainerState, ContainerCommand, ContainerEvent> = {
  kind: "container",
  // MigrationFailed is the container's too (API.md's name for the migration saga's failed outcome).
  owns: (type): type is ContainerEvent["type"] => type.startsWith("Container") || type === "MigrationFailed",
  decide,
  evolve,
  refuses: (s, e) => {
    if (e.type === "ContainerCreated") return s ? `ContainerCreated for container ${s.id}, which exists` : null;
    if (!s) return `${e.type} for a container that does not exist (never created, or removed)`;
    if (nextState(s.state, e.type) === null) return `${e.type} is not allowed in state ${s.state}`;
    return notTheOwners(s, e);
  },
  gone: (s) => s.removed,
};

/** The command service bound to containers, as the container handlers use it. */
export type ContainerCommands = AggregateCommands<ContainerState, ContainerCommand, ContainerEvent>;
