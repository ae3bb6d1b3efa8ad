// Restart policies on the real stack: containers that exit by themselves under runc/conmon, the
// decision and its backoff recorded in the log, timers that survive a daemon restart through it.
// Backoffs are small and timings are asserted loosely (never earlier than due, within seconds).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type C = { id: string; state: string; pid: number | null; exitCode: number | null; restartCount: number; pending: string | null; lastError: string | null };
type Ev = { type: string; eventId: string; actor: string; seq: number; at: string; causationId: string | null; data: Record<string, unknown> };

const FAST = { initialMs: 100, maxMs: 400 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(skip)("restart policies on the real stack", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d?.destroy();
  });

  const run = async (cmd: string[], extra: Record<string, unknown> = {}) => {
    const r = await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd, ...extra });
    expect(r.error).toBeUndefined();
    return r.result!;
  };
  const get = (id: string) => d.get<C>(`/v1/containers/${id}`);
  const events = async (id: string) => (await d.get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events;
  const ofType = (evs: Ev[], type: string) => evs.filter((e) => e.type === type);
  const remove = async (id: string) => {
    const r = await d.cmd("container.remove", { id, force: true });
    expect(r.error).toBeUndefined();
  };
  /** Exited with nothing in progress and no restart scheduled, and still so after `quietMs`. */
  const settled = (id: string, quietMs = 800, ms = 15_000) =>
    until(async () => {
      const c = await get(id);
      if (c.state !== "exited" || c.pending !== null) return false;
      // Exited also for a moment between an exit and the policy's decision: wait for quiet.
      const n = (await events(id)).length;
      await sleep(quietMs);
      return (await events(id)).length === n && c;
    }, ms);
  /** Each restart waited at least its delay after being scheduled, and not absurdly longer. */
  const expectBackoffKept = (evs: Ev[], lateMs = 3_000) => {
    for (const s of ofType(evs, "ContainerRestartScheduled")) {
      const next = evs.find((e) => e.seq > s.seq && e.type === "ContainerStartRequested");
      if (!next) continue;
      const waited = Date.parse(next.at) - Date.parse(s.at);
      expect(waited).toBeGreaterThanOrEqual((s.data.delayMs as number) - 20);
      expect(waited).toBeLessThan((s.data.delayMs as number) + lateMs);
    }
  };

  it("on-failure:2 restarts a failing container exactly twice with backoff, then leaves it exited", async () => {
    const { id } = await run(["sh", "-c", "exit 3"], { restartPolicy: { name: "on-failure", maxRetries: 2, backoff: FAST } });
    const c = await settled(id);
    expect(c).toMatchObject({ state: "exited", exitCode: 3, restartCount: 2 });

    const evs = await events(id);
    expect(evs.map((e) => e.type)).toEqual([
      "ContainerCreated",
      "ContainerStartRequested",
      "ContainerStarted",
      "ContainerExited",
      "ContainerRestartScheduled",
      "ContainerStartRequested",
      "ContainerStarted",
      "ContainerExited",
      "ContainerRestartScheduled",
      "ContainerStartRequested",
      "ContainerStarted",
      "ContainerExited",
    ]);
    expect(ofType(evs, "ContainerRestartScheduled").map((e) => e.data)).toEqual([
      { attempt: 1, delayMs: 100 },
      { attempt: 2, delayMs: 200 },
    ]);
    expect(ofType(evs, "ContainerExited").map((e) => e.data.exitCode)).toEqual([3, 3, 3]);
    // The policy's starts say which attempt they are; each outcome names its start.
    expect(ofType(evs, "ContainerStartRequested").map((e) => e.data.attempt)).toEqual([undefined, 1, 2]);
    const starts = ofType(evs, "ContainerStartRequested");
    expect(ofType(evs, "ContainerStarted").map((e) => e.causationId)).toEqual(starts.map((e) => e.eventId));
    expectBackoffKept(evs);
    await remove(id);
  });

  it("always restarts after a clean exit, doubling the delay up to its cap", async () => {
    const { id } = await run(["sh", "-c", "exit 0"], { restartPolicy: { name: "always", backoff: FAST } });
    await until(async () => ofType(await events(id), "ContainerRestartScheduled").length >= 4, 20_000);
    await remove(id);
    const evs = await events(id);
    expect(ofType(evs, "ContainerRestartScheduled").slice(0, 4).map((e) => e.data)).toEqual([
      { attempt: 1, delayMs: 100 },
      { attempt: 2, delayMs: 200 },
      { attempt: 3, delayMs: 400 },
      { attempt: 4, delayMs: 400 },
    ]);
    expect(ofType(evs, "ContainerStarted").length).toBeGreaterThanOrEqual(4);
    expect(evs.at(-1)?.type).toBe("ContainerRemoved");
    expectBackoffKept(evs);
  });

  it("does not restart under 'no', nor under on-failure after exit 0", async () => {
    const none = await run(["sh", "-c", "exit 1"]);
    const clean = await run(["sh", "-c", "exit 0"], { restartPolicy: { name: "on-failure", backoff: FAST } });
    for (const [{ id }, code] of [[none, 1], [clean, 0]] as const) {
      const c = await settled(id);
      expect(c).toMatchObject({ exitCode: code, restartCount: 0 });
      expect(ofType(await events(id), "ContainerRestartScheduled")).toEqual([]);
      await remove(id);
    }
  });

  it("a user's stop keeps an always container down; a start afterwards works and re-enables the policy", async () => {
    const { id, pid } = await run(["sleep", "1000"], { restartPolicy: { name: "always", backoff: FAST } });
    const stop = await d.cmd("container.stop", { id, timeoutSec: 1 });
    expect(stop.result).toMatchObject({ id, state: "exited" });
    expect(alive(pid)).toBe(false);
    const c = await settled(id, 1_000);
    expect(c.restartCount).toBe(0);
    expect(ofType(await events(id), "ContainerRestartScheduled")).toEqual([]);

    const again = await d.cmd<{ state: string; pid: number }>("container.start", { id });
    expect(again.result).toMatchObject({ id, state: "running" });
    const count = (await get(id)).restartCount;
    // Killed from outside (not by the user through berth): the policy brings it back.
    process.kill(again.result!.pid, "SIGKILL");
    const back = await until(async () => {
      const c = await get(id);
      return c.state === "running" && c.pid !== again.result!.pid && c;
    });
    expect(back.restartCount).toBe(count + 1);
    expect((await events(id)).filter((e) => e.type === "ContainerExited").at(-1)?.data.exitCode).toBe(137);
    const sched = ofType(await events(id), "ContainerRestartScheduled");
    expect(sched.map((e) => e.data)).toEqual([{ attempt: 1, delayMs: 100 }]);
    await remove(id);
  });

  it("a stop while a restart is scheduled cancels it", async () => {
    const delayMs = 1_000;
    const { id } = await run(["sh", "-c", "exit 1"], { restartPolicy: { name: "always", backoff: { initialMs: delayMs, maxMs: delayMs } } });
    await until(async () => (await get(id)).state === "restarting");
    const stop = await d.cmd("container.stop", { id, timeoutSec: 1 });
    expect(stop.result).toMatchObject({ id, state: "exited" });
    const evs = await events(id);
    const sched = ofType(evs, "ContainerRestartScheduled");
    expect(sched).toHaveLength(1);
    expect(evs.at(-1)?.type).toBe("ContainerRestartCancelled");
    // Past the time it was due, nothing started it.
    await sleep(Math.max(0, Date.parse(sched[0].at) + delayMs + 500 - Date.now()));
    const c = await get(id);
    expect(c).toMatchObject({ state: "exited", exitCode: 1, restartCount: 0, pending: null });
    expect((await events(id)).length).toBe(evs.length);
    await remove(id);
  });

  it("a policy restart that cannot start goes through the policy again until its retries are used up", async () => {
    // The first run deletes its own shell from the container's rootfs: later starts fail.
    const { id } = await run(["/bin/sh", "-c", "rm -f /bin/sh; exit 1"], { restartPolicy: { name: "on-failure", maxRetries: 3, backoff: FAST } });
    const c = await settled(id, 1_000, 20_000);
    expect(c).toMatchObject({ state: "exited", exitCode: 1, restartCount: 0 });
    expect(c.lastError).toBeTruthy();
    const evs = await events(id);
    expect(ofType(evs, "ContainerRestartScheduled").map((e) => e.data)).toEqual([
      { attempt: 1, delayMs: 100 },
      { attempt: 2, delayMs: 200 },
      { attempt: 3, delayMs: 400 },
    ]);
    expect(ofType(evs, "ContainerStartFailed")).toHaveLength(3);
    expect(evs.at(-1)?.type).toBe("ContainerStartFailed");
    expectBackoffKept(evs);
    await remove(id);
  });

  it("keeps the restart count and backoff attempt across a daemon restart", async () => {
    const delayMs = 1_500;
    const { id } = await run(["sh", "-c", "exit 3"], {
      restartPolicy: { name: "on-failure", maxRetries: 2, backoff: { initialMs: delayMs, maxMs: delayMs } },
    });
    const first = await until(async () => ofType(await events(id), "ContainerRestartScheduled")[0]);
    const dueAt = Date.parse(first.at) + delayMs;
    const { dataRoot, node } = d;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    // Down while the restart fell due: the new daemon finds it overdue and starts it at once.
    expect(Date.now()).toBeLessThan(dueAt);
    await sleep(dueAt + 300 - Date.now());
    const t0 = Date.now();
    d = await startTestDaemon({ dataRoot, node, natsPort });

    // Both restarts first (on a loaded host one start can outlast the quiet window), then quiet.
    await until(async () => (await get(id)).restartCount === 2, 20_000);
    const c = await settled(id, 800, 20_000);
    expect(c).toMatchObject({ state: "exited", exitCode: 3, restartCount: 2 });
    const evs = await events(id);
    expect(ofType(evs, "ContainerRestartScheduled").map((e) => e.data)).toEqual([
      { attempt: 1, delayMs },
      { attempt: 2, delayMs },
    ]);
    const starts = ofType(evs, "ContainerStartRequested");
    expect(starts.map((e) => e.data.attempt)).toEqual([undefined, 1, 2]);
    // The overdue restart came from the new daemon, soon after it started.
    expect(Date.parse(starts[1].at)).toBeGreaterThanOrEqual(t0);
    expect(Date.parse(starts[1].at) - t0).toBeLessThan(10_000);
    // The first restart waited out the daemon's downtime too.
    expectBackoffKept(evs, Infinity);
    expect(Date.parse(starts[2].at) - Date.parse(ofType(evs, "ContainerRestartScheduled")[1].at)).toBeLessThan(delayMs + 3_000);
    await remove(id);
  });
  it("at daemon start, a user-stopped 'always' container runs again, a user-stopped 'unless-stopped' one stays stopped (Docker)", async () => {
    const made: Record<string, string> = {};
    for (const name of ["always", "unless-stopped", "on-failure", "no"] as const) {
      const { id } = await run(["sleep", "1000"], { restartPolicy: { name, backoff: FAST }, stopTimeoutSec: 1 });
      expect((await d.cmd("container.stop", { id, timeoutSec: 1 })).ok).toBe(true);
      made[name] = id;
    }
    const { dataRoot, node } = d;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    d = await startTestDaemon({ dataRoot, node, natsPort });

    const back = await until(async () => {
      const c = await get(made.always);
      return c.state === "running" && c;
    }, 20_000);
    expect(back.restartCount).toBe(1);
    const evs = await events(made.always);
    const start = ofType(evs, "ContainerStartRequested").at(-1)!;
    // The reason is in the log: the policy, at daemon start.
    expect(start.actor).toBe(`berth/${node}/restart-policy/daemon-start`);
    expect(ofType(evs, "ContainerRestartScheduled").at(-1)!.actor).toBe(`berth/${node}/restart-policy/daemon-start`);
    for (const name of ["unless-stopped", "on-failure", "no"]) {
      const c = await settled(made[name], 800, 20_000);
      expect(c, name).toMatchObject({ state: "exited", restartCount: 0 });
      expect(ofType(await events(made[name]), "ContainerRestartScheduled"), name).toEqual([]);
    }
    // A second daemon start adds nothing: the always container runs, the others keep their stop.
    await d.stop();
    d = await startTestDaemon({ dataRoot, node, natsPort });
    expect(await get(made.always)).toMatchObject({ state: "running", pid: back.pid, restartCount: 1 });
    expect((await get(made["unless-stopped"])).state).toBe("exited");
    for (const id of Object.values(made)) await remove(id);
  }, 90_000);
});
