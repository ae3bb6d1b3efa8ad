// The offline checkpointer's state table: given what the log says of the parent, whether the log
// is reachable, whether it runs here and its copy's state, when decided at t0 (just seen gone)
// and at t0 + grace, then the action. Every cell of the table is a row.
import { describe, expect, it } from "vitest";
import {
  DEFAULT_GRACE_MS,
  decideCheckpoint,
  type CheckpointAction,
  type CheckpointerInput,
  type CopyState,
  type ParentState,
} from "../../src/handlers/checkpointer.js";

const GRACE = 30_000;
const isGone = (p: ParentState) => p === "migrated" || p === "removed";

/** t0: the parent was just seen gone (0 ms ago), or is not gone; t0 + grace: gone for exactly the grace. */
const given = (parent: ParentState, logReachable: boolean, runningLocally: boolean, copy: CopyState) => ({
  when: (at: "t0" | "t0+grace", o: Partial<CheckpointerInput> = {}) =>
    decideCheckpoint({
      parent,
      logReachable,
      runningLocally,
      copy,
      // A live parent gets a stale gone time at t0 + grace too: it must not make it removable.
      goneForMs: at === "t0" ? (isGone(parent) ? 0 : null) : GRACE,
      graceMs: GRACE,
      ...o,
    }),
});

type Row = [parent: ParentState, log: "reachable" | "unreachable", running: "running" | "not running", copy: CopyState, atT0: CheckpointAction, atGrace: CheckpointAction];

const table: Row[] = [
  // The log is back and it is ours: always handed back, never started, stopped or removed here.
  ["owned", "reachable", "not running", "inactive", "handBack", "handBack"],
  ["owned", "reachable", "running", "inactive", "handBack", "handBack"],
  ["owned", "reachable", "not running", "active", "handBack", "handBack"],
  ["owned", "reachable", "running", "active", "handBack", "handBack"],
  // Offline and ours: bootkube's "inactive and not running → start"; the rest has nothing to do.
  ["owned", "unreachable", "not running", "inactive", "start", "start"],
  ["owned", "unreachable", "running", "inactive", "keep", "keep"],
  ["owned", "unreachable", "not running", "active", "keep", "keep"],
  ["owned", "unreachable", "running", "active", "keep", "keep"],
  // Moved to another node: never started here; stopped at once, its copy removed after the grace.
  ["migrated", "reachable", "not running", "inactive", "keep", "remove"],
  ["migrated", "reachable", "running", "inactive", "stop", "remove"],
  ["migrated", "reachable", "not running", "active", "keep", "remove"],
  ["migrated", "reachable", "running", "active", "stop", "remove"],
  ["migrated", "unreachable", "not running", "inactive", "keep", "remove"],
  ["migrated", "unreachable", "running", "inactive", "stop", "remove"],
  ["migrated", "unreachable", "not running", "active", "keep", "remove"],
  ["migrated", "unreachable", "running", "active", "stop", "remove"],
  // Removed (parent gone): the same, bootkube's "parent gone → remove after grace".
  ["removed", "reachable", "not running", "inactive", "keep", "remove"],
  ["removed", "reachable", "running", "inactive", "stop", "remove"],
  ["removed", "reachable", "not running", "active", "keep", "remove"],
  ["removed", "reachable", "running", "active", "stop", "remove"],
  ["removed", "unreachable", "not running", "inactive", "keep", "remove"],
  ["removed", "unreachable", "running", "inactive", "stop", "remove"],
  ["removed", "unreachable", "not running", "active", "keep", "remove"],
  ["removed", "unreachable", "running", "active", "stop", "remove"],
  // No answer (not caught up, or nothing known offline): nothing is started, stopped or removed.
  ["unknown", "reachable", "not running", "inactive", "keep", "keep"],
  ["unknown", "reachable", "running", "inactive", "keep", "keep"],
  ["unknown", "reachable", "not running", "active", "keep", "keep"],
  ["unknown", "reachable", "running", "active", "keep", "keep"],
  ["unknown", "unreachable", "not running", "inactive", "keep", "keep"],
  ["unknown", "unreachable", "running", "inactive", "keep", "keep"],
  ["unknown", "unreachable", "not running", "active", "keep", "keep"],
  ["unknown", "unreachable", "running", "active", "keep", "keep"],
];

const parents: ParentState[] = ["owned", "migrated", "removed", "unknown"];
const copies: CopyState[] = ["active", "inactive"];

describe("decideCheckpoint, the state table", () => {
  it("has one row per cell: parent × log × running × copy", () => {
    const keys = new Set(table.map(([p, l, r, c]) => `${p}/${l}/${r}/${c}`));
    expect(keys.size).toBe(table.length);
    expect(table.length).toBe(parents.length * 2 * 2 * copies.length);
  });

  describe.each(table)("given parent %s, log %s, %s, copy %s", (parent, log, running, copy, atT0, atGrace) => {
    const g = given(parent, log === "reachable", running === "running", copy);
    it(`when decided at t0, then ${atT0}`, () => {
      const d = g.when("t0");
      expect(d.action).toBe(atT0);
      expect(d.reason).toEqual(expect.any(String));
    });
    it(`when decided at t0 + grace, then ${atGrace}`, () => {
      expect(g.when("t0+grace").action).toBe(atGrace);
    });
  });
});

describe("decideCheckpoint, the rules behind the table", () => {
  const every = parents.flatMap((parent) =>
    [true, false].flatMap((logReachable) =>
      [true, false].flatMap((runningLocally) =>
        copies.flatMap((copy) =>
          [null, 0, GRACE - 1, GRACE, 10 * GRACE].map((goneForMs): CheckpointerInput => ({ parent, logReachable, runningLocally, copy, goneForMs, graceMs: GRACE })),
        ),
      ),
    ),
  );

  it("given any input, when it says start, then the log is unreachable, this node owns it, and it is not running", () => {
    for (const i of every.filter((x) => decideCheckpoint(x).action === "start")) {
      expect(i).toMatchObject({ parent: "owned", logReachable: false, runningLocally: false, copy: "inactive" });
    }
  });

  it("given a parent that is alive (owned) or not known, when any time passed, then it is never removed or stopped", () => {
    for (const i of every.filter((x) => x.parent === "owned" || x.parent === "unknown")) {
      expect(["remove", "stop"]).not.toContain(decideCheckpoint(i).action);
    }
  });

  it("given a container the last thing this node knew says it no longer owns, when offline, then it is never started", () => {
    for (const i of every.filter((x) => x.parent === "migrated" && !x.logReachable)) {
      expect(decideCheckpoint(i).action).not.toBe("start");
    }
  });

  it("given a parent gone and still running, when one ms before the grace ends, then stop; when it ends, then remove", () => {
    const g = given("migrated", true, true, "active");
    expect(g.when("t0", { goneForMs: GRACE - 1 }).action).toBe("stop");
    expect(g.when("t0", { goneForMs: GRACE }).action).toBe("remove");
    expect(g.when("t0", { goneForMs: GRACE * 100 }).action).toBe("remove");
  });

  it("given a parent gone with no time known, when decided, then the grace starts now (stop, not remove)", () => {
    expect(given("removed", true, true, "inactive").when("t0", { goneForMs: null }).action).toBe("stop");
    expect(given("removed", true, false, "inactive").when("t0", { goneForMs: null }).action).toBe("keep");
  });

  it("given a grace of 0, when the parent is gone, then it is removed at once", () => {
    expect(given("removed", true, true, "active").when("t0", { graceMs: 0 }).action).toBe("remove");
    expect(given("migrated", false, false, "inactive").when("t0", { graceMs: -5 }).action).toBe("remove");
  });

  it("says why", () => {
    expect(given("owned", false, false, "inactive").when("t0").reason).toMatch(/cannot be reached.*owns it/);
    expect(given("migrated", true, true, "active").when("t0").reason).toMatch(/moved to another node.*must not run here/);
    expect(given("removed", true, false, "inactive").when("t0+grace").reason).toMatch(/removed.*grace period is over/);
  });

  it("is pure: the same input gives the same decision", () => {
    const i: CheckpointerInput = { parent: "removed", logReachable: true, runningLocally: true, copy: "active", goneForMs: 5, graceMs: DEFAULT_GRACE_MS };
    expect(decideCheckpoint(i)).toEqual(decideCheckpoint({ ...i }));
  });
});
