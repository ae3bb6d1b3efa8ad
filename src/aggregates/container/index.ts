// The container aggregate as the framework sees it: one Decider value. Its parts live beside it:
// state.ts (state and evolve), transitions.ts (the table), decider.ts (decide).
import type { ContainerEvent } from "../../events/types.js";
import type { AggregateCommands, Decider } from "../decider.js";
import { decide, type ContainerCommand } from "./decider.js";
import { evolve, type ContainerState } from "./state.js";
import { nextState } from "./transitions.js";

export const containerDecider: Decider<ContainerState, ContainerCommand, ContainerEvent> = {
  kind: "container",
  owns: (type): type is ContainerEvent["type"] => type.startsWith("Container"),
  decide,
  evolve,
  // Only a live container has a state to leave; anything after its removal is ignored by evolve.
  allows: (s, e) => s === null || nextState(s.state, e.type) !== null,
  gone: (s) => s.removed,
};

/** The command service bound to containers, as the container handlers use it. */
export type ContainerCommands = AggregateCommands<ContainerState, ContainerCommand, ContainerEvent>;
