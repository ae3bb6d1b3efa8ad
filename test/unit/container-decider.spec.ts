// Decider tests read as given(events).when(command).then(events) or .thenThrows(code).
import { describe, expect, it } from "vitest";
import { decide, type ContainerCommand, type NewEvent } from "../../src/aggregates/container/decider.js";
import { evolve, type ContainerState } from "../../src/aggregates/container/state.js";
import type { ContainerEvent } from "../../src/events/types.js";
import { BerthError } from "../../src/shared/errors.js";

const ID = "a".repeat(64);
let seq = 0;

function ev(e: NewEvent, eventId = `e${seq + 1}`): ContainerEvent & { seq: number } {
  seq++;
  return {
    ...e,
    v: 1,
    eventId,
    at: new Date(Date.UTC(2026, 10, 22, 0, 0, seq)).toISOString(),
    node: "n1",
    actor: "test",
    correlationId: "c",
    causationId: null,
    seq,
  } as ContainerEvent & { seq: number };
}

const created = (spec: Record<string, unknown> = {}): NewEvent => ({
  type: "ContainerCreated",
  data: { id: ID, name: "web", image: "busybox:latest", imageDigest: "sha256:" + "b".repeat(64), node: "n1", spec: { image: "busybox:latest", ...spec } },
});
const startReq: NewEvent = { type: "ContainerStartRequested", data: {} };
const started: NewEvent = { type: "ContainerStarted", data: { pid: 42, startedAt: "2026-11-22T00:00:10.000Z" } };
const exited = (code = 0): NewEvent => ({ type: "ContainerExited", data: { exitCode: code, oomKilled: false, exitedAt: "2026-11-22T00:01:00.000Z" } });
const paused: NewEvent = { type: "ContainerPaused", data: {} };
const removeReq: NewEvent = { type: "ContainerRemoveRequested", data: { force: false } };

function given(...events: NewEvent[]) {
  seq = 0;
  let s: ContainerState | null = null;
  for (const e of events) s = evolve(s, ev(e));
  return {
    state: s,
    when(cmd: ContainerCommand) {
      const run = () => decide(cmd, s);
      return {
        then(expected: NewEvent[]) {
          expect(run()).toEqual(expected);
        },
        thenThrows(code: string, message?: RegExp) {
          try {
            run();
          } catch (err) {
            expect(err).toBeInstanceOf(BerthError);
            expect((err as BerthError).code).toBe(code);
            if (message) expect((err as Error).message).toMatch(message);
            return;
          }
          throw new Error(`expected ${code}, got events`);
        },
      };
    },
  };
}

describe("container decider", () => {
  it("create on nothing records ContainerCreated", () => {
    const c = created();
    given().when({ type: "Create", data: (c as Extract<NewEvent, { type: "ContainerCreated" }>).data }).then([c]);
  });

  it("create with autoRemove and a restart policy is InvalidArgument", () => {
    const c = created({ autoRemove: true, restartPolicy: { name: "always" } }) as Extract<NewEvent, { type: "ContainerCreated" }>;
    given().when({ type: "Create", data: c.data }).thenThrows("InvalidArgument", /autoRemove/);
  });

  it("create with an unknown stop signal is InvalidArgument, as kill's signal is", () => {
    const c = created({ stopSignal: "SIGNOPE" }) as Extract<NewEvent, { type: "ContainerCreated" }>;
    given().when({ type: "Create", data: c.data }).thenThrows("InvalidArgument", /invalid signal 'SIGNOPE'/);
    for (const ok of ["SIGTERM", "term", "QUIT", "15"]) {
      const d = created({ stopSignal: ok }) as Extract<NewEvent, { type: "ContainerCreated" }>;
      given().when({ type: "Create", data: d.data }).then([d]);
    }
  });

  it("create in a pod with its own network or hostname is InvalidArgument; pod null is fine", () => {
    const c = created({ pod: "app", network: { mode: "bridge" } }) as Extract<NewEvent, { type: "ContainerCreated" }>;
    given().when({ type: "Create", data: c.data }).thenThrows("InvalidArgument", /takes its network and hostname from its pod/);
    const h = created({ pod: "app", hostname: "x" }) as Extract<NewEvent, { type: "ContainerCreated" }>;
    given().when({ type: "Create", data: h.data }).thenThrows("InvalidArgument", /from its pod/);
    const d = created({ pod: null }) as Extract<NewEvent, { type: "ContainerCreated" }>;
    given().when({ type: "Create", data: d.data }).then([d]);
  });

  it("create of an existing id is AlreadyExists", () => {
    const c = created() as Extract<NewEvent, { type: "ContainerCreated" }>;
    given(c).when({ type: "Create", data: c.data }).thenThrows("AlreadyExists");
  });

  it("start of a created container records the intent", () => {
    given(created()).when({ type: "Start" }).then([startReq]);
  });

  it("start of a running container is a Conflict, not a second process", () => {
    given(created(), startReq, started).when({ type: "Start" }).thenThrows("Conflict", /already running/);
  });

  it("start while another start is pending is a Conflict", () => {
    given(created(), startReq).when({ type: "Start" }).thenThrows("Conflict", /busy: start/);
  });

  it("stop of a running container records the intent with signal and timeout", () => {
    given(created(), startReq, started)
      .when({ type: "Stop", signal: "SIGTERM", timeoutSec: 5 })
      .then([{ type: "ContainerStopRequested", data: { signal: "SIGTERM", timeoutSec: 5 } }]);
  });

  it("stop of an exited container is a Conflict", () => {
    given(created(), startReq, started, exited(0))
      .when({ type: "Stop", signal: "SIGTERM", timeoutSec: 5 })
      .thenThrows("Conflict", /not running/);
  });

  it("start of an exited container is allowed", () => {
    given(created(), startReq, started, exited(7)).when({ type: "Start" }).then([startReq]);
  });

  it("pause needs running; unpause needs paused", () => {
    given(created()).when({ type: "Pause" }).thenThrows("Conflict");
    given(created(), startReq, started).when({ type: "Pause" }).then([{ type: "ContainerPauseRequested", data: {} }]);
    given(created(), startReq, started, { type: "ContainerPauseRequested", data: {} }, paused)
      .when({ type: "Unpause" })
      .then([{ type: "ContainerUnpauseRequested", data: {} }]);
    given(created(), startReq, started).when({ type: "Unpause" }).thenThrows("Conflict", /not paused/);
  });

  it("remove of a running container needs force", () => {
    given(created(), startReq, started).when({ type: "Remove", force: false }).thenThrows("Conflict", /force/);
    given(created(), startReq, started)
      .when({ type: "Remove", force: true })
      .then([{ type: "ContainerRemoveRequested", data: { force: true } }]);
  });

  it("a forced remove overtakes a pending start but not a pending remove", () => {
    given(created(), startReq).when({ type: "Remove", force: true }).then([{ type: "ContainerRemoveRequested", data: { force: true } }]);
    given(created(), removeReq).when({ type: "Remove", force: true }).thenThrows("Conflict");
  });

  it("stop while a restart is scheduled cancels the restart; start then is a Conflict", () => {
    const scheduled: NewEvent = { type: "ContainerRestartScheduled", data: { attempt: 1, delayMs: 100 } };
    given(created(), startReq, started, exited(1), scheduled)
      .when({ type: "Stop", signal: "SIGTERM", timeoutSec: 1 })
      .then([{ type: "ContainerRestartCancelled", data: {} }]);
    given(created(), startReq, started, exited(1), scheduled).when({ type: "Start" }).thenThrows("Conflict", /restart/);
  });

  it("any command on a removed container is NotFound", () => {
    given(created(), removeReq, { type: "ContainerRemoved", data: {} }).when({ type: "Start" }).thenThrows("NotFound");
  });

  it("update with nothing to change is InvalidArgument; a policy change is recorded", () => {
    given(created()).when({ type: "Update" }).thenThrows("InvalidArgument");
    given(created())
      .when({ type: "Update", restartPolicy: { name: "always" } })
      .then([{ type: "ContainerUpdated", data: { restartPolicy: { name: "always" } } }]);
  });

  it("update to a restart policy on an autoRemove container is InvalidArgument", () => {
    given(created({ autoRemove: true })).when({ type: "Update", restartPolicy: { name: "always" } }).thenThrows("InvalidArgument");
  });

  it("update of annotations records the patch; folded, a null removes its key and the rest stay", () => {
    const patch = { "berth.io/checkpoint": null, team: "db" };
    given(created({ annotations: { "berth.io/checkpoint": "true", keep: "x" } }))
      .when({ type: "Update", annotations: patch })
      .then([{ type: "ContainerUpdated", data: { annotations: patch } }]);
    const g = given(created({ annotations: { "berth.io/checkpoint": "true", keep: "x" } }), { type: "ContainerUpdated", data: { annotations: patch } });
    expect(g.state?.annotations).toEqual({ keep: "x", team: "db" });
    expect(g.state?.spec.annotations).toEqual({ keep: "x", team: "db" });
  });

  it("berth.io/checkpoint with any value but \"true\" is InvalidArgument, on create and on update", () => {
    for (const v of ["false", "True", "1", " true", ""]) {
      const c = created({ annotations: { "berth.io/checkpoint": v } }) as Extract<NewEvent, { type: "ContainerCreated" }>;
      given().when({ type: "Create", data: c.data }).thenThrows("InvalidArgument", /berth\.io\/checkpoint/);
      given(created()).when({ type: "Update", annotations: { "berth.io/checkpoint": v } }).thenThrows("InvalidArgument", /must be "true"/);
    }
    given(created()).when({ type: "Update", annotations: { "berth.io/checkpoint": "true" } }).then([{ type: "ContainerUpdated", data: { annotations: { "berth.io/checkpoint": "true" } } }]);
  });
});

describe("evolve", () => {
  it("follows Created → Started → Exited with pid, exit code and times", () => {
    const g = given(created(), startReq, started, exited(7));
    expect(g.state).toMatchObject({ state: "exited", pid: null, exitCode: 7, finishedAt: "2026-11-22T00:01:00.000Z", pending: null, restartCount: 0 });
  });

  it("keeps an intent pending until its outcome, and counts restarts", () => {
    const g = given(created(), startReq);
    expect(g.state?.pending?.type).toBe("ContainerStartRequested");
    // A user's start is not a restart; a start the policy requested (with an attempt) is.
    const h = given(created(), startReq, started, exited(1), startReq, started);
    expect(h.state).toMatchObject({ state: "running", pending: null, restartCount: 0, pid: 42 });
    const policyStart: NewEvent = { type: "ContainerStartRequested", data: { attempt: 1 } };
    const p = given(created(), startReq, started, exited(1), { type: "ContainerRestartScheduled", data: { attempt: 1, delayMs: 100 } }, policyStart, started);
    expect(p.state).toMatchObject({ state: "running", restartCount: 1 });
  });

  it("a restart stays pending across its own exit", () => {
    const g = given(created(), startReq, started, { type: "ContainerRestartRequested", data: { timeoutSec: 1 } }, exited(143));
    expect(g.state).toMatchObject({ state: "exited", pending: { type: "ContainerRestartRequested" } });
  });

  it("keeps the backoff attempt from the log, reset by a long enough run", () => {
    const sched = (attempt: number): NewEvent => ({ type: "ContainerRestartScheduled", data: { attempt, delayMs: 200 } });
    const g = given(created(), startReq, started, exited(1), sched(1), startReq, started, exited(1), sched(2));
    expect(g.state).toMatchObject({ state: "restarting", restartAttempt: 2 });
    expect(Date.parse(g.state!.restartDueAt!)).toBeGreaterThan(0);
    // started at 00:00:10, exited at 00:01:00: 50 s ≥ resetAfterMs (10 s)
    const h = given(created(), startReq, started, exited(1), sched(3), startReq, started, exited(1));
    expect(h.state?.restartAttempt).toBe(0);
  });

  it("a removed container is marked removed", () => {
    expect(given(created(), removeReq, { type: "ContainerRemoved", data: {} }).state?.removed).toBe(true);
  });
});

describe("decide: Migrate", () => {
  const migrate: ContainerCommand = { type: "Migrate", checkpointId: "f".repeat(64), toNode: "n2", preCopy: false };
  const requested: NewEvent = { type: "ContainerMigrationRequested", data: { checkpointId: "f".repeat(64), fromNode: "n1", toNode: "n2", preCopy: false } };

  it("given a running container with named and anonymous volumes, when it migrates, then the migration is requested (its volumes move with it)", () => {
    given(created({ mounts: [{ type: "volume", source: "data", target: "/data" }, { type: "volume", source: `anon-${ID.slice(0, 16)}-0`, target: "/scratch" }] }), startReq, started).when(migrate).then([requested]);
  });

  it("given a container that is not running, when it migrates, then Conflict", () => {
    given(created(), startReq, started, exited()).when(migrate).thenThrows("Conflict", /only a running container migrates/);
  });

  it("given a running container on n1, when it migrates to n1, then Conflict", () => {
    given(created(), startReq, started).when({ ...migrate, toNode: "n1" }).thenThrows("Conflict", /on node n1 already/);
  });
});
