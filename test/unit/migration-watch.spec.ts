// The source's watch over the targets of its dumped migrations (migration-watch.ts): a target
// down for the whole grace is reported once its grace is over; one seen up again starts over.
import { describe, expect, it, vi } from "vitest";
import { TargetWatch, watchTargets } from "../../src/handlers/migration-watch.js";

describe("TargetWatch", () => {
  const up = new Set<string>(["n2"]);
  const watch = () => new TargetWatch((n) => up.has(n), 10_000);

  it("given a target that is up, then nothing expires however long", () => {
    const w = watch();
    expect(w.expired([{ key: "c1", toNode: "n2" }], 0)).toEqual([]);
    expect(w.expired([{ key: "c1", toNode: "n2" }], 60_000)).toEqual([]);
  });

  it("given a target down, then it expires once it has been down for the grace, not before", () => {
    const w = watch();
    expect(w.expired([{ key: "c1", toNode: "n3" }], 1_000)).toEqual([]);
    expect(w.expired([{ key: "c1", toNode: "n3" }], 10_999)).toEqual([]);
    expect(w.expired([{ key: "c1", toNode: "n3" }], 11_000)).toEqual(["c1"]);
  });

  it("given a target that comes back during the grace, then its clock starts over", () => {
    const w = watch();
    const items = [{ key: "c1", toNode: "n4" }];
    expect(w.expired(items, 0)).toEqual([]);
    up.add("n4");
    expect(w.expired(items, 8_000)).toEqual([]);
    up.delete("n4");
    expect(w.expired(items, 9_000)).toEqual([]);
    expect(w.expired(items, 18_000)).toEqual([]);
    expect(w.expired(items, 19_000)).toEqual(["c1"]);
  });

  it("given no grace (the default), then nothing ever expires", () => {
    const w = new TargetWatch(() => false, 0);
    expect(w.expired([{ key: "c1", toNode: "n3" }], 0)).toEqual([]);
    expect(w.expired([{ key: "c1", toNode: "n3" }], 1e12)).toEqual([]);
  });

  it("says why, with the grace in seconds", () => {
    expect(watch().reason("n3")).toMatch(/^node n3 went down after the dump \(no heartbeat for 10 s\)/);
  });
});

describe("watchTargets (the loop both the container and the pod migrations use)", () => {
  it("given takeover off or no node liveness, then nothing runs", () => {
    expect(watchTargets(() => false, () => [], () => undefined, 0)).toBeNull();
    expect(watchTargets(undefined, () => [], () => undefined, 5_000)).toBeNull();
  });

  it("given a target down for the grace, then the loop takes that migration back with the reason, and stops when told", () => {
    vi.useFakeTimers();
    try {
      const taken: [string, string][] = [];
      const stop = watchTargets((n) => n === "n2", () => [{ key: "a", toNode: "n2" }, { key: "b", toNode: "n3" }], (k, r) => taken.push([k, r]), 5_000)!;
      // Looked at every 2 s: first seen down at 2 s, so due at the look at 8 s.
      vi.advanceTimersByTime(6_000);
      expect(taken).toEqual([]);
      vi.advanceTimersByTime(2_000);
      expect(taken).toEqual([["b", expect.stringMatching(/^node n3 went down after the dump/)]]);
      stop();
      vi.advanceTimersByTime(60_000);
      expect(taken.length).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
