// The container aggregate as the framework sees it: one Decider value. Its parts live beside it:
// state.ts (state and evolve), transitions.ts (the table), decider.ts (decide).
import type { ContainerEvent } from "../../events/types.js";
import type { AggregateCommands, Decider } from "../decider.js";
import { decide, type ContainerCommand } from "./decider.js";
import { evolve, type ContainerState } from "./state.js";
import { nextState } from "./transitions.js";

export const containerDecider: Decider<ContainerState, ContainerCommand, ContainerEvent> = {
  kind: "container",
  // MigrationFailed is the container's too (API.md's name for the migration saga's failed outcome).
  owns: (type): type is ContainerEvent["type"] => type.startsWith("Container") || type === "MigrationFailed",
  decide,
  evolve,
  refuses: (s, e) => {
    if (e.type === "ContainerCreated") return s ? `ContainerCreated for container ${s.id}, which exists` : null;
    if (!s) return `${e.type} for a container that does not exist (never created, or removed)`;
    return nextState(s.state, e.type) === null ? `${e.type} is not allowed in state ${s.state}` : null;
  },
  gone: (s) => s.removed,
};

/** The command service bound to containers, as the container handlers use it. */
export type ContainerCommands = AggregateCommands<ContainerState, ContainerCommand, ContainerEvent>;
