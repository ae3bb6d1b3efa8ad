// The owner rule on the read side (containerDecider.refuses): what only the owning node's host
// can know is folded only when that node wrote it; intents come from any daemon; a migration's
// target writes its own two facts. A fact from another node is quarantined, not folded.
import { describe, expect, it } from "vitest";
import { containerDecider, OWNER_FACTS } from "../../src/aggregates/container/index.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { ContainerEvent } from "../../src/events/types.js";

const AT = "2026-12-02T00:00:00.000Z";
const state = (o: Partial<ContainerState> = {}) => ({ id: "c1", name: "web", node: "n1", state: "running", spec: { image: "busybox" }, migration: null, ...o }) as ContainerState;
const ev = (type: string, data: unknown, node: string) => ({ type, data, v: 1, eventId: "e", at: AT, node, actor: "t", correlationId: "c", causationId: null }) as unknown as ContainerEvent;

describe("the owner rule", () => {
  it("given a running container of n1, when n1 reports its exit, then it is folded", () => {
    expect(containerDecider.refuses(state(), ev("ContainerExited", { exitCode: 0, oomKilled: false, exitedAt: AT }, "n1"))).toBeNull();
  });

  it("given a running container of n1, when n2 reports its exit, then it is refused", () => {
    expect(containerDecider.refuses(state(), ev("ContainerExited", { exitCode: 0, oomKilled: false, exitedAt: AT }, "n2"))).toMatch(/ContainerExited written by node n2, which is not its owner n1/);
  });

  it("given a running container of n1, when n2 appends a stop intent, then it is folded (any daemon takes commands)", () => {
    expect(containerDecider.refuses(state(), ev("ContainerStopRequested", { signal: "SIGTERM", timeoutSec: 10 }, "n2"))).toBeNull();
  });

  it("given a migration to n2, then n2 writes ContainerMigrated and its restore's failure, n3 neither", () => {
    const m = state({ state: "exited", migration: { checkpointId: "x", fromNode: "n1", toNode: "n2", preCopy: false, dumpedAt: AT, frozenMs: 1, transfer: "store", restoreFailed: null } });
    const migrated = { checkpointId: "x", fromNode: "n1", toNode: "n2", downtimeMs: 1, pid: 9, startedAt: AT };
    expect(containerDecider.refuses(m, ev("ContainerMigrated", migrated, "n2"))).toBeNull();
    expect(containerDecider.refuses(m, ev("ContainerMigrated", migrated, "n3"))).toMatch(/not its migration's target/);
    expect(containerDecider.refuses(m, ev("ContainerMigrated", { ...migrated, toNode: "n3" }, "n3"))).toMatch(/not its migration's target/);
    const failed = { checkpointId: "x", node: "n2", reason: "r" };
    expect(containerDecider.refuses(m, ev("ContainerMigrationRestoreFailed", failed, "n2"))).toBeNull();
    // Its owner too (a takeover when the target is down).
    expect(containerDecider.refuses(m, ev("ContainerMigrationRestoreFailed", failed, "n1"))).toBeNull();
    expect(containerDecider.refuses(m, ev("ContainerMigrationRestoreFailed", failed, "n3"))).toMatch(/not its migration's target or its owner/);
  });

  it("given a pod member moved by its pod's migration (no migration of its own), then the target named in the fact writes it", () => {
    const member = state({ state: "exited", spec: { image: "busybox", pod: "p1" } });
    const migrated = { checkpointId: "x", fromNode: "n1", toNode: "n2", downtimeMs: 1, pid: 9, startedAt: AT, pod: "p1" };
    expect(containerDecider.refuses(member, ev("ContainerMigrated", migrated, "n2"))).toBeNull();
    expect(containerDecider.refuses(member, ev("ContainerMigrated", migrated, "n1"))).toMatch(/not its migration's target/);
  });

  it("lists no intent among the owner's facts", () => {
    for (const t of OWNER_FACTS) expect(t.endsWith("Requested"), t).toBe(false);
  });
});
