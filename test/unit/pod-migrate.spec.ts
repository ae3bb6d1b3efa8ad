// The pod migration saga's pure parts: podMigrationNext (which node does what next, from the pod
// and its checkpoint), the pod decider's Migrate guard, evolve (ownership moves only with
// PodMigrated) and the refusals that keep a stray or late fact out of a migration it is not of.
import { describe, expect, it } from "vitest";
import { podMigrationNext, type PodMigrationStep } from "../../src/handlers/pod-migrate.js";
import { podDecider, type PodMigrationSaga, type PodState } from "../../src/aggregates/pod/index.js";
import type { PodEvent } from "../../src/events/types.js";

const CP = "c".repeat(64);
const POD = "p".repeat(64);
const AT = "2026-12-02T00:00:00.000Z";

const saga = (o: Partial<PodMigrationSaga> = {}): PodMigrationSaga => ({
  checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false, eventId: "e1", dumpedAt: null, frozenAt: null, restoreFailed: null, ...o,
});
const pod = (o: Partial<PodState> = {}): PodState => ({
  id: POD, name: "app", node: "n1", spec: { name: "app", network: { mode: "bridge", ip: "10.89.1.5" } }, createdAt: AT, ip: "10.89.1.5", removed: false, version: 3, ...o,
});

describe("podMigrationNext: which node does what next", () => {
  it.each<[string, PodState, string, boolean, PodMigrationStep]>([
    ["no migration: nothing, for anyone", pod(), "n1", false, { kind: "none" }],
    ["asked for: the source checkpoints the pod", pod({ migration: saga() }), "n1", false, { kind: "checkpoint" }],
    ["asked for: the target waits", pod({ migration: saga() }), "n2", false, { kind: "none" }],
    ["a third node has no part in it", pod({ migration: saga({ dumpedAt: AT }) }), "n3", true, { kind: "none" }],
    ["checkpoint under way (not yet recorded): the source carries it on", pod({ migration: saga(), checkpoint: { checkpointId: CP, eventId: "e2", leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [], pausedBefore: [] } }), "n1", false, { kind: "checkpoint" }],
    ["checkpointed and recorded: the source says it is dumped", pod({ migration: saga(), checkpointed: CP }), "n1", true, { kind: "dumped" }],
    ["the pod checkpoint failed: the source ends the migration with its reason", pod({ migration: saga(), checkpointFailed: { checkpointId: CP, reason: "dump a: CRIU said no" } }), "n1", false, { kind: "fail", reason: "dump a: CRIU said no" }],
    ["an older checkpoint's failure is not this migration's", pod({ migration: saga(), checkpointFailed: { checkpointId: "d".repeat(64), reason: "old" } }), "n1", false, { kind: "checkpoint" }],
    ["dumped: the target restores", pod({ migration: saga({ dumpedAt: AT, frozenAt: AT }), checkpointed: CP }), "n2", true, { kind: "restore" }],
    ["dumped: the source waits", pod({ migration: saga({ dumpedAt: AT, frozenAt: AT }), checkpointed: CP }), "n1", true, { kind: "none" }],
    ["the target could not restore: the source restores it", pod({ migration: saga({ dumpedAt: AT, restoreFailed: "no image" }), checkpointed: CP }), "n1", true, { kind: "compensate" }],
    ["the target could not restore: the target has nothing more to do", pod({ migration: saga({ dumpedAt: AT, restoreFailed: "no image" }) }), "n2", true, { kind: "none" }],
  ])("given %s", (_what, p, node, recorded, want) => {
    expect(podMigrationNext(p, node, () => recorded)).toEqual(want);
  });

  const from = { checkpointId: CP, fromNode: "n1", containers: ["m1", "m2"], eventId: "e1" };
  it("given the pod migrated to n2 with a member still n1's, then n2 records the members; n1 does nothing", () => {
    const moved = pod({ node: "n2", migratedFrom: from });
    const nodes: Record<string, string> = { m1: "n2", m2: "n1" };
    expect(podMigrationNext(moved, "n2", () => true, (id) => nodes[id])).toEqual({ kind: "members" });
    expect(podMigrationNext(moved, "n1", () => true, (id) => nodes[id])).toEqual({ kind: "none" });
  });

  it("given the pod migrated and every member recorded, then nothing is left to do", () => {
    expect(podMigrationNext(pod({ node: "n2", migratedFrom: from }), "n2", () => true, () => "n2")).toEqual({ kind: "none" });
  });
});

describe("the pod decider's migration", () => {
  let seq = 0;
  // The target (n2) writes its two facts; the owner (n1) everything else.
  const writer = (type: string) => (type === "PodMigrated" || type === "PodMigrationRestoreFailed" ? "n2" : "n1");
  const ev = (type: string, data: unknown, node = writer(type)) => ({ type, data, v: 1, eventId: `e${++seq}`, at: AT, node, actor: "t", correlationId: "c", causationId: null, seq, subject: `berth.ev.pod.${POD}` }) as PodEvent & { seq: number; subject: string };
  const fold = (events: [string, unknown][], from: PodState | null = null) => events.reduce<PodState | null>((s, [t, d]) => podDecider.evolve(s, ev(t, d)), from);
  const created = fold([["PodCreated", { id: POD, name: "app", node: "n1", spec: { name: "app", network: { mode: "bridge", ip: "10.89.1.5" } } }], ["PodStarted", { ip: "10.89.1.5", containers: [] }]])!;
  const migrate = { type: "Migrate" as const, checkpointId: CP, toNode: "n2", preCopy: false };

  it("given a pod on n1, when it is asked to move to n2, then the intent names both nodes", () => {
    expect(podDecider.decide(migrate, created)).toEqual([{ type: "PodMigrationRequested", data: { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false } }]);
  });

  it("refuses a move to its own node, a second migration, and one during a checkpoint", () => {
    expect(() => podDecider.decide({ ...migrate, toNode: "n1" }, created)).toThrow(/on node n1 already/);
    const moving = fold([["PodMigrationRequested", { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false }]], created)!;
    expect(() => podDecider.decide({ ...migrate, checkpointId: "d".repeat(64) }, moving)).toThrow(/migration of pod app to n2 is under way/);
    const checkpointing = fold([["PodCheckpointRequested", { checkpointId: "d".repeat(64), leaveRunning: false, tcpEstablished: false, fileLocks: false, members: ["a".repeat(64)], pausedBefore: [] }]], created)!;
    expect(() => podDecider.decide(migrate, checkpointing)).toThrow(/checkpoint of pod app is under way/);
  });

  it("given a migration dumped, when PodMigrated comes, then the pod is the target's, its IP the target's, and no saga is left", () => {
    const s = fold([
      ["PodMigrationRequested", { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false }],
      ["PodMigrationDumped", { checkpointId: CP, dumpedAt: AT, frozenAt: AT }],
    ], created)!;
    expect(s.node).toBe("n1");
    expect(s.migration).toMatchObject({ dumpedAt: AT, frozenAt: AT, restoreFailed: null });
    const moved = fold([["PodMigrated", { checkpointId: CP, fromNode: "n1", toNode: "n2", downtimeMs: 800, ip: "10.89.2.7", containers: [] }]], s)!;
    expect(moved).toMatchObject({ node: "n2", ip: "10.89.2.7", migration: null, lastError: null, migratedFrom: { checkpointId: CP, fromNode: "n1", containers: [] } });
    expect(moved.spec.node).toBe("n2");
    // The old IP was n1's subnet's: the spec no longer asks for it.
    expect(moved.spec.network?.ip).toBeUndefined();
  });

  it("given a migration the target could not restore, when it fails compensated, then it stays on n1 with the reason", () => {
    const s = fold([
      ["PodMigrationRequested", { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false }],
      ["PodMigrationDumped", { checkpointId: CP, dumpedAt: AT, frozenAt: AT }],
      ["PodMigrationRestoreFailed", { checkpointId: CP, node: "n2", reason: "no image" }],
    ], created)!;
    expect(s.migration?.restoreFailed).toBe("no image");
    const failed = fold([["PodMigrationFailed", { checkpointId: CP, node: "n1", reason: "no image", compensated: true }]], s)!;
    expect(failed).toMatchObject({ node: "n1", ip: "10.89.1.5", migration: null, lastError: "migration: no image" });
  });

  it("refuses a migration's fact of another migration, and a second intent while one is under way", () => {
    const moving = fold([["PodMigrationRequested", { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false }]], created)!;
    const other = "d".repeat(64);
    expect(podDecider.refuses(moving, ev("PodMigrated", { checkpointId: other, fromNode: "n1", toNode: "n2", downtimeMs: 1, containers: [] }))).toMatch(/not the one under way/);
    expect(podDecider.refuses(created, ev("PodMigrationDumped", { checkpointId: CP, dumpedAt: AT, frozenAt: AT }))).toMatch(/not the one under way/);
    expect(podDecider.refuses(moving, ev("PodMigrationRequested", { checkpointId: other, fromNode: "n1", toNode: "n2", preCopy: false }))).toMatch(/under way/);
    expect(podDecider.refuses(moving, ev("PodMigrationDumped", { checkpointId: CP, dumpedAt: AT, frozenAt: AT }))).toBeNull();
  });

  it("refuses a pod's facts written by a node that is neither its owner nor its migration's target", () => {
    const moving = fold([["PodMigrationRequested", { checkpointId: CP, fromNode: "n1", toNode: "n2", preCopy: false }], ["PodMigrationDumped", { checkpointId: CP, dumpedAt: AT, frozenAt: AT }]], created)!;
    const migrated = { checkpointId: CP, fromNode: "n1", toNode: "n2", downtimeMs: 1, containers: [] };
    expect(podDecider.refuses(moving, ev("PodMigrated", migrated, "n2"))).toBeNull();
    expect(podDecider.refuses(moving, ev("PodMigrated", migrated, "n3"))).toMatch(/written by node n3, which is not the pod's owner n1 or its migration's target/);
    expect(podDecider.refuses(moving, ev("PodMigrated", migrated, "n1"))).toMatch(/written by node n1/);
    expect(podDecider.refuses(moving, ev("PodMigrationRestoreFailed", { checkpointId: CP, node: "n1", reason: "x" }, "n1"))).toBeNull();
    expect(podDecider.refuses(moving, ev("PodMigrationRestoreFailed", { checkpointId: CP, node: "n3", reason: "x" }, "n3"))).toMatch(/not the pod's owner/);
    expect(podDecider.refuses(created, ev("PodStopped", { containers: [] }, "n2"))).toMatch(/written by node n2, which is not the pod's owner n1/);
  });
});
