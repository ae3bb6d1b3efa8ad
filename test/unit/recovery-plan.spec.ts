// Recovery's plan: given the log's view and the host's facts, then these actions.
import { describe, expect, it } from "vitest";
import { planRecovery, type HostFacts } from "../../src/handlers/recovery.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { RuncState } from "../../src/shared/host-facts.js";

const c = (id: string, state: ContainerState["state"], node = "n1"): ContainerState =>
  ({ id, name: id, image: "busybox:latest", imageDigest: "sha256:d", state, node, spec: { image: "busybox:latest", network: { mode: "none" } } } as ContainerState);
const runc = (id: string, status: RuncState["status"]): [string, RuncState] => [id, { id, status, pid: 1, bundle: "/b", created: "" }];
const facts = (f: Partial<HostFacts>): HostFacts => ({ runc: new Map(), exits: new Map(), conmonAlive: new Set(), imageMissing: new Set(), sandboxes: new Set(), attached: new Set(), ...f });
const exit = { exitCode: 3, oomKilled: false, exitedAt: "2026-11-22T00:00:00.000Z" };

describe("planRecovery", () => {
  it("given a running container that runc still runs, then adopt it", () => {
    expect(planRecovery([c("a", "running")], "n1", facts({ runc: new Map([runc("a", "running")]), conmonAlive: new Set(["a"]) }))).toEqual([{ kind: "adopt", id: "a" }]);
  });

  it("given a running container with an exit file, then record the exit", () => {
    expect(planRecovery([c("a", "running")], "n1", facts({ exits: new Map([["a", exit]]) }))).toEqual([{ kind: "recordExit", id: "a" }]);
  });

  it("given a running container with no process, no conmon and no exit file, then it vanished", () => {
    expect(planRecovery([c("a", "running")], "n1", facts({}))).toEqual([{ kind: "vanished", id: "a" }]);
    expect(planRecovery([c("a", "paused")], "n1", facts({ runc: new Map([runc("a", "stopped")]) }))).toEqual([{ kind: "vanished", id: "a" }]);
  });

  it("given a stopped container whose conmon still lives, then adopt it (the exit file is coming)", () => {
    expect(planRecovery([c("a", "running")], "n1", facts({ runc: new Map([runc("a", "stopped")]), conmonAlive: new Set(["a"]) }))).toEqual([{ kind: "adopt", id: "a" }]);
  });

  it("given a stopped container whose image is gone, then restore failed; a running one is left running", () => {
    const f = facts({ imageMissing: new Set(["a", "b"]), runc: new Map([runc("b", "running")]) });
    expect(planRecovery([c("a", "exited"), c("b", "running")], "n1", f)).toEqual([
      { kind: "recoveryFailed", id: "a", reason: expect.stringContaining("no longer on node n1") },
      { kind: "adopt", id: "b" },
    ]);
  });

  it("given another node's container, then leave it alone", () => {
    expect(planRecovery([c("a", "running", "n2")], "n1", facts({}))).toEqual([]);
  });

  it("given another node's container in this node's runc root (a migration that ended otherwise), then remove it here", () => {
    expect(planRecovery([c("a", "running", "n2")], "n1", facts({ runc: new Map([runc("a", "running")]) }))).toEqual([{ kind: "foreign", id: "a" }]);
  });

  it("given another node's container whose bundle only is left here (its migration's source killed before its clean-up), then remove it here", () => {
    expect(planRecovery([c("a", "running", "n2")], "n1", facts({ bundles: new Set(["a"]) }))).toEqual([{ kind: "foreign", id: "a" }]);
  });

  it("given another node's container that is migrating here, or that its pod brings here, then keep it", () => {
    const migrating = { ...c("a", "exited", "n2"), migration: { checkpointId: "x", fromNode: "n2", toNode: "n1", preCopy: false, dumpedAt: "t", frozenMs: 0, restoreFailed: null } } as ContainerState;
    const member = { ...c("b", "exited", "n2"), spec: { image: "busybox:latest", pod: "p1" } } as ContainerState;
    const f = facts({ runc: new Map([runc("a", "running"), runc("b", "running")]), sandboxes: new Set(["p1"]) });
    expect(planRecovery([migrating, member], "n1", f, ["p1"], (x) => x.spec.pod === "p1")).toEqual([]);
  });

  it("given a runc container the log does not know, then it is an orphan", () => {
    expect(planRecovery([c("a", "exited")], "n1", facts({ runc: new Map([runc("zz", "running")]) }))).toEqual([{ kind: "orphan", id: "zz" }]);
  });
});

describe("planRecovery: sandboxes", () => {
  const bridge = (id: string, state: ContainerState["state"]): ContainerState =>
    ({ ...c(id, state), spec: { image: "busybox:latest", network: { mode: "bridge" } } }) as ContainerState;
  it("given a sandbox whose container or pod the log does not know, then release it", () => {
    expect(planRecovery([c("a", "exited")], "n1", facts({ sandboxes: new Set(["a", "gone", "pod1"]) }), ["pod1"])).toEqual([{ kind: "releaseSandbox", key: "gone" }]);
  });
  it("given a sandbox of another node's container (it migrated away), then release it", () => {
    expect(planRecovery([c("a", "running", "n2")], "n1", facts({ sandboxes: new Set(["a"]) }))).toEqual([{ kind: "releaseSandbox", key: "a" }]);
  });
  it("given an adopted bridge container whose attachment is gone, then report it; a vanished one is left to its policy", () => {
    const f = facts({ runc: new Map([runc("a", "running")]), conmonAlive: new Set(["a"]) });
    expect(planRecovery([bridge("a", "running"), bridge("b", "running")], "n1", f)).toEqual([
      { kind: "adopt", id: "a" },
      { kind: "vanished", id: "b" },
      { kind: "networkMissing", id: "a" },
    ]);
    expect(planRecovery([bridge("a", "running")], "n1", { ...f, attached: new Set(["a"]) })).toEqual([{ kind: "adopt", id: "a" }]);
  });
});
