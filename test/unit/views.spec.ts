import { describe, expect, it } from "vitest";
import { FormatRegistry } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { evolve, type ContainerState } from "../../src/aggregates/container/state.js";
import { ContainerView, byCreated, toContainerView } from "../../src/projections/views.js";
import type { ContainerEvent } from "../../src/events/types.js";

// TypeBox checks no formats by itself; fastify's ajv does (ajv-formats).
if (!FormatRegistry.Has("date-time")) FormatRegistry.Set("date-time", (s) => !Number.isNaN(Date.parse(s)));

const ID = "ab".repeat(32);
let seq = 0;
const ev = (type: ContainerEvent["type"], data: unknown, at = "2026-03-01T10:00:00.000Z") =>
  ({ type, v: 1, eventId: `e${++seq}`, at, node: "n1", actor: "t", correlationId: "c", causationId: null, data, seq }) as ContainerEvent & { seq: number };

function fold(...events: (ContainerEvent & { seq: number })[]): ContainerState {
  let s: ContainerState | null = null;
  for (const e of events) s = evolve(s, e);
  return s!;
}

const created = () =>
  ev("ContainerCreated", {
    id: ID, name: "web", image: "busybox:latest", imageDigest: "sha256:" + "e".repeat(64), node: "n1",
    spec: { name: "web", image: "busybox:latest", labels: { app: "web" }, restartPolicy: { name: "always" }, cmd: ["sleep", "1000"] },
  });

describe("the Container view", () => {
  it("shows the API.md fields, and the spec only when asked", () => {
    const s = fold(created(), ev("ContainerStartRequested", {}), ev("ContainerStarted", { pid: 42, startedAt: "2026-03-01T10:00:01.000Z" }));
    const v = toContainerView(s, false);
    expect(v).toEqual({
      id: ID, name: "web", image: "busybox:latest", imageDigest: "sha256:" + "e".repeat(64), state: "running", node: "n1",
      pid: 42, exitCode: null, oomKilled: false, restartCount: 0, health: "none",
      createdAt: "2026-03-01T10:00:00.000Z", startedAt: "2026-03-01T10:00:01.000Z", finishedAt: null,
      labels: { app: "web" }, annotations: {}, restartPolicy: { name: "always" }, version: s.version,
      pending: null, lastError: null, networkMode: "none", ip: null, ports: [], pod: null, revision: 0, previous: null, checkpointed: false, checkpoint: null,
    });
    expect(Value.Check(ContainerView, v)).toBe(true);
    const full = toContainerView(s, true);
    expect(full.spec).toEqual(s.spec);
    expect(Value.Check(ContainerView, full)).toBe(true);
  });

  it("names a pending intent by its type and hides the bookkeeping", () => {
    const s = fold(created(), ev("ContainerStartRequested", {}), ev("ContainerStarted", { pid: 42, startedAt: "x" }), ev("ContainerStopRequested", { signal: "SIGTERM", timeoutSec: 10 }));
    const v = toContainerView(s, false) as unknown as Record<string, unknown>;
    expect(v.pending).toBe("ContainerStopRequested");
    expect(v).not.toHaveProperty("stoppedByUser");
    expect(v).not.toHaveProperty("removed");
  });

  it("carries exits and failures", () => {
    const s = fold(created(), ev("ContainerStartRequested", {}), ev("ContainerStartFailed", { error: "runc: no such file" }));
    expect(toContainerView(s, false)).toMatchObject({ state: "created", lastError: "runc: no such file", pending: null });
    const e = fold(created(), ev("ContainerStartRequested", {}), ev("ContainerStarted", { pid: 1, startedAt: "x" }), ev("ContainerExited", { exitCode: 137, oomKilled: true, exitedAt: "2026-03-01T10:00:09.000Z" }));
    expect(toContainerView(e, false)).toMatchObject({ state: "exited", pid: null, exitCode: 137, oomKilled: true, finishedAt: "2026-03-01T10:00:09.000Z" });
  });

  it("does not share the state's objects", () => {
    const s = fold(created());
    const v = toContainerView(s, false);
    v.labels.app = "changed";
    expect(s.labels.app).toBe("web");
  });

  it("sorts oldest first, stable by id", () => {
    const a = { createdAt: "2026-01-01T00:00:00Z", id: "b" } as ContainerView;
    const b = { createdAt: "2026-01-01T00:00:00Z", id: "a" } as ContainerView;
    const c = { createdAt: "2025-01-01T00:00:00Z", id: "z" } as ContainerView;
    expect([a, b, c].sort(byCreated).map((x) => x.id)).toEqual(["z", "a", "b"]);
  });
});
