// The written transition table: event ordering as containerd writes it down (Created → Started →
// Exited → Removed), and every other event refused.
import { describe, expect, it } from "vitest";
import { LIFECYCLE_STATES, TRANSITIONS, nextState } from "../../src/aggregates/container/transitions.js";

describe("transition table", () => {
  it.each([
    ["created", "ContainerStarted", "running"],
    ["running", "ContainerExited", "exited"],
    ["running", "ContainerPaused", "paused"],
    ["paused", "ContainerUnpaused", "running"],
    ["paused", "ContainerExited", "exited"],
    ["exited", "ContainerStarted", "running"],
    ["exited", "ContainerRemoveRequested", "removing"],
    ["removing", "ContainerRemoved", "removed"],
    ["removing", "ContainerActionFailed", "dead"],
    ["dead", "ContainerRemoveRequested", "removing"],
  ] as const)("given %s, when %s, then %s", (from, event, to) => {
    expect(nextState(from, event)).toBe(to);
  });

  it.each([
    ["created", "ContainerExited"],
    ["created", "ContainerPaused"],
    ["running", "ContainerStarted"],
    ["running", "ContainerStartRequested"],
    ["exited", "ContainerExited"],
    ["exited", "ContainerPauseRequested"],
    ["exited", "ContainerStopRequested"],
    ["paused", "ContainerPauseRequested"],
    ["removing", "ContainerStartRequested"],
    ["dead", "ContainerStarted"],
  ] as const)("given %s, %s is an invalid transition", (from, event) => {
    expect(nextState(from, event)).toBeNull();
  });

  it("every row names only known states", () => {
    for (const s of LIFECYCLE_STATES) {
      for (const to of Object.values(TRANSITIONS[s])) {
        expect([...LIFECYCLE_STATES, "removed"]).toContain(to);
      }
    }
  });

  it("no state but removing and dead accepts ContainerRemoved", () => {
    const accepting = LIFECYCLE_STATES.filter((s) => nextState(s, "ContainerRemoved") !== null);
    expect(accepting.sort()).toEqual(["dead", "removing"]);
  });
});
