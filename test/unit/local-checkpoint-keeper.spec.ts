// Which containers keep a local copy on a node (handlers/local-checkpoints.ts), given/when/then.
import { describe, expect, it } from "vitest";
import { LocalCheckpointKeeper, migratingAway, wantsCopy } from "../../src/handlers/local-checkpoints.js";
import type { CopyRetiring, LocalCopyPort } from "../../src/handlers/ports.js";
import type { Projector } from "../../src/projections/projector.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { PodState } from "../../src/aggregates/pod/index.js";

const container = (o: Partial<ContainerState> = {}) => ({ id: "c1", node: "n1", removed: false, annotations: {}, spec: { image: "busybox" }, ...o }) as ContainerState;
const pod = (annotations: Record<string, string>, removed = false) => ({ id: "p1", removed, spec: { annotations } }) as unknown as PodState;
const marked = { "berth.io/checkpoint": "true" };

describe("wantsCopy", () => {
  it("given a container of this node annotated berth.io/checkpoint=true, then it has a copy here", () => {
    expect(wantsCopy(container({ annotations: marked }), "n1")).toBe(true);
  });
  it("given one without the annotation, or with it on another node, or removed, or none at all, then no copy here", () => {
    expect(wantsCopy(container(), "n1")).toBe(false);
    expect(wantsCopy(container({ annotations: marked }), "n2")).toBe(false);
    expect(wantsCopy(container({ annotations: marked, removed: true }), "n1")).toBe(false);
    expect(wantsCopy(undefined, "n1")).toBe(false);
  });
  it("given a member of a pod annotated so, then it has a copy; a removed pod's member does not by the pod's annotation", () => {
    const member = container({ spec: { image: "busybox", pod: "p1" } });
    expect(wantsCopy(member, "n1", pod(marked))).toBe(true);
    expect(wantsCopy(member, "n1", pod(marked, true))).toBe(false);
    expect(wantsCopy(member, "n1", pod({}))).toBe(false);
  });
});

describe("migratingAway", () => {
  const migration = (o: object) => ({ checkpointId: "k", fromNode: "n1", toNode: "n2", preCopy: false, dumpedAt: null, frozenMs: 0, transfer: "direct", restoreFailed: null, ...o });
  it("given a migration from this node that has dumped it, then its copy is marked migrated (not to be started offline)", () => {
    expect(migratingAway(container({ migration: migration({ dumpedAt: "2026-12-03T00:00:00.000Z" }) } as Partial<ContainerState>), "n1")).toEqual({ reason: "migrated", since: "2026-12-03T00:00:00.000Z", toNode: "n2" });
  });
  it("given one not dumped yet, or none, then the copy is not marked", () => {
    expect(migratingAway(container({ migration: migration({}) } as Partial<ContainerState>), "n1")).toBeNull();
    expect(migratingAway(container(), "n1")).toBeNull();
  });
});

/** The keeper over an in-memory copy store and a model the test sets (the log's answer). */
function keeperWith(containers: ContainerState[], onDisk: { id: string; retiring: CopyRetiring | null }[], graceMs: number) {
  const disk = new Map(onDisk.map((c) => [c.id, { ...c, writtenAt: "2026-12-03T00:00:00.000Z", logSeq: 1 }]));
  const byId = new Map(containers.map((c) => [c.id, c]));
  const port: LocalCopyPort = {
    write: async (c, _pod, retiring) => (disk.set(c.id, { id: c.id, retiring: retiring ?? null, writtenAt: new Date().toISOString(), logSeq: c.version }), new Date().toISOString()),
    remove: async (id) => void disk.delete(id),
    list: async () => [...disk.values()],
  };
  const model = { byId: (id: string) => byId.get(id), pods: new Map(), containers: byId, membersOf: () => [] };
  const projector = { model, onEvent: () => () => undefined } as unknown as Projector;
  return { keeper: new LocalCheckpointKeeper("n1", projector, port, graceMs), disk };
}

describe("LocalCheckpointKeeper", () => {
  const since = () => new Date().toISOString();
  it("given a copy the hand-back retired (its container removed), when the keeper starts, then the copy stays until the grace period is over, then goes", async () => {
    const { keeper, disk } = keeperWith([], [{ id: "c1", retiring: { reason: "removed", since: since() } }], 150);
    await keeper.start();
    expect(disk.has("c1")).toBe(true);
    expect(keeper.info("c1")).toBeNull();
    await new Promise((r) => setTimeout(r, 300));
    await keeper.idle();
    expect(disk.has("c1")).toBe(false);
    keeper.stop();
  });
  it("given a copy whose container is gone and that nobody retired (the log said so while online), then it goes at once", async () => {
    const { keeper, disk } = keeperWith([container({ id: "c1", node: "n2", annotations: marked })], [{ id: "c1", retiring: null }], 60_000);
    await keeper.start();
    expect(disk.has("c1")).toBe(false);
    keeper.stop();
  });
  it("given a marked container this node has dumped for a migration, then its copy is rewritten as retiring; when the migration is compensated, it is plain again", async () => {
    const dumped = container({ id: "c1", annotations: marked, version: 5, migration: { checkpointId: "k", fromNode: "n1", toNode: "n2", preCopy: false, dumpedAt: "2026-12-03T00:00:00.000Z", frozenMs: 1, transfer: "direct", restoreFailed: null } } as Partial<ContainerState>);
    const { keeper, disk } = keeperWith([dumped], [{ id: "c1", retiring: null }], 60_000);
    await keeper.start();
    expect(disk.get("c1")!.retiring).toEqual({ reason: "migrated", since: "2026-12-03T00:00:00.000Z", toNode: "n2" });
    expect(keeper.info("c1")).toBeNull();
    keeper.stop();
    const back = keeperWith([{ ...dumped, migration: null, version: 6 }], [{ id: "c1", retiring: disk.get("c1")!.retiring }], 60_000);
    await back.keeper.start();
    expect(back.disk.get("c1")!.retiring).toBeNull();
    expect(back.keeper.info("c1")).not.toBeNull();
    back.keeper.stop();
  });
});
