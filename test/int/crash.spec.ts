// Crash matrix: for each command and each fault point, the daemon dies there (BERTH_FAULT), a
// new daemon starts on the same data root, and the log and the host converge: each container
// exists once, every command took effect once (or not at all), no transition the table forbids
// is in the log, and nothing is leaked.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Paths } from "../../src/runtime/paths.js";
import { nextState, type LifecycleState } from "../../src/aggregates/container/transitions.js";
import { OUTCOMES, type ContainerEvent, type EventType } from "../../src/events/types.js";
import { BUILT, ProcSession, startDaemonProc } from "../support/daemon-proc.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type Ev = { type: ContainerEvent["type"]; seq: number; eventId: string; causationId: string | null; data: Record<string, unknown> };
type C = { id: string; state: string; pid: number | null; exitCode: number | null; pending: string | null; ip: string | null };

interface Case {
  verb: string;
  /** Prepares the container; returns its id. Counts the intents/outcomes before the one that dies. */
  prep: (cmd: Cmd) => Promise<string>;
  before: number;
  body: (id: string) => Record<string, unknown>;
  /** The converged state. */
  expect: (c: C | null, pidBefore: number | null) => void;
}
type Cmd = (verb: string, body: unknown, timeoutMs?: number) => Promise<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string } }>;

const runSleep = async (cmd: Cmd) => (await cmd("run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 })).result!.id as string;

const CASES: Case[] = [
  { verb: "run", before: 0, prep: async () => "", body: () => ({ image: "busybox", cmd: ["sleep", "1000"] }), expect: (c) => expect(c?.state).toBe("running") },
  {
    verb: "start", before: 0,
    prep: async (cmd) => (await cmd("create", { image: "busybox", cmd: ["sleep", "1000"] })).result!.id as string,
    body: (id) => ({ id }), expect: (c) => expect(c?.state).toBe("running"),
  },
  { verb: "stop", before: 1, prep: runSleep, body: (id) => ({ id, timeoutSec: 1 }), expect: (c) => expect(c).toMatchObject({ state: "exited", exitCode: 137 }) },
  { verb: "kill", before: 1, prep: runSleep, body: (id) => ({ id }), expect: (c) => expect(c).toMatchObject({ state: "exited", exitCode: 137 }) },
  {
    verb: "restart", before: 1, prep: runSleep, body: (id) => ({ id, timeoutSec: 1 }),
    expect: (c, pid) => {
      expect(c?.state).toBe("running");
      expect(c?.pid).not.toBe(pid);
    },
  },
  { verb: "remove", before: 1, prep: runSleep, body: (id) => ({ id, force: true }), expect: (c) => expect(c).toBeNull() },
  { verb: "pause", before: 1, prep: runSleep, body: (id) => ({ id }), expect: (c) => expect(c?.state).toBe("paused") },
];
const POINTS = ["after-intent", "after-action"] as const;

describe.skipIf(skip)("crash matrix", () => {
  let dataRoot: string;
  let natsPort: number;
  let session: ProcSession;
  const node = `crash${randomBytes(3).toString("hex")}`;
  const cmd: Cmd = (verb, body, timeoutMs) => session.cmd(verb, body, timeoutMs);
  const http = <T>(path: string) => session.http<T>(path);
  const up = (env: Record<string, string> = {}) => session.up(env);
  const down = (signal: NodeJS.Signals = "SIGTERM") => session.down(signal);

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-crash-"));
    natsPort = await freePort();
    session = new ProcSession(dataRoot, node, natsPort);
  });
  afterAll(async () => {
    if (session.d && session.nc) {
      const { body } = await http<{ containers: { id: string }[] }>("/v1/containers?all=true");
      for (const c of body?.containers ?? []) await cmd("remove", { id: c.id, force: true });
      const pods = await http<{ pods: { id: string }[] }>("/v1/pods");
      for (const p of pods.body?.pods ?? []) await cmd("pod.remove", { id: p.id, force: true });
    }
    await down();
    await rm(dataRoot, { recursive: true, force: true });
    await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
  });

  for (const c of CASES) {
    for (const point of POINTS) {
      it(`${c.verb} dies ${point}, then converges`, async () => {
        try {
          await crashAndConverge(c, point);
        } finally {
          await down();
        }
      });
    }
  }

  // The network steps (bridge is the default): between CNI ADD and the container's start, and
  // between CNI DEL and its record.
  const NET_CASES: [Case, string][] = [
    [{ ...CASES.find((x) => x.verb === "run")!, before: 0 }, "after-attach"],
    [{ ...CASES.find((x) => x.verb === "start")!, before: 0 }, "after-attach"],
    [{ ...CASES.find((x) => x.verb === "remove")!, before: 0 }, "after-detach"],
  ];
  for (const [c, point] of NET_CASES) {
    it(`${c.verb} dies ${point}, then converges`, async () => {
      try {
        await crashAndConverge(c, point);
      } finally {
        await down();
      }
    });
  }

  it("pod rm -f dies after its sandbox is released, and a retry finishes it with nothing left", async () => {
    try {
      await up({ BERTH_FAULT: "after-detach:1" });
      expect((await cmd("pod.create", { name: "cp" })).error).toBeUndefined();
      expect((await cmd("run", { name: "cp-a", pod: "cp", image: "busybox", cmd: ["sleep", "1000"] })).error).toBeUndefined();
      const podId = (await http<{ id: string }>("/v1/pods/cp")).body.id;
      // The member's removal has no attachment of its own (it is the pod's): the fault is the pod's.
      const outcome = await Promise.race([
        cmd("pod.remove", { id: "cp", force: true }, 10_000).then(() => "replied", () => "no reply"),
        session.d!.exited.then(() => "died"),
      ]);
      expect(outcome).toBe("died");
      await session.nc!.close().catch(() => undefined);
      await up();
      expect((await http("/v1/pods/cp")).status).toBe(200);
      expect((await cmd("pod.remove", { id: "cp", force: true })).error).toBeUndefined();
      expect((await http("/v1/pods/cp")).status).toBe(404);
      expect(existsSync(join(dataRoot, "sandboxes", podId))).toBe(false);
      expectNoNetworkLeft();
    } finally {
      await down();
    }
  });

  function expectNoNetworkLeft() {
    expect(readdirSync(join(dataRoot, "sandboxes"))).toEqual([]);
    expect(readdirSync(join(dataRoot, "network", "attachments"))).toEqual([]);
    const leases = readdirSync(join(dataRoot, "network", "leases")).flatMap((n) => readdirSync(join(dataRoot, "network", "leases", n)));
    expect(leases.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))).toEqual([]);
  }

  it("one daemon per data root: a second is refused while the first runs; after a kill -9, a lock whose pid another process now has is no one's", async () => {
    try {
      await up();
      await expect(startDaemonProc(dataRoot, node, natsPort)).rejects.toThrow(/another berth daemon \(pid \d+\) uses/);
      await down("SIGKILL");
      // The dead daemon's pid taken by another live node process (pids wrap at 32768 here): this
      // test's own, with the lock's start time the dead one's.
      const lock = join(dataRoot, "berth.pid");
      const [, start] = readFileSync(lock, "utf8").trim().split(" ");
      expect(start).toMatch(/^\d+$/);
      writeFileSync(lock, `${process.pid} ${start}\n`);
      await up();
      expect((await http<{ status: string }>("/healthz")).body).toEqual({ status: "ok" });
    } finally {
      await down();
    }
  });

  it("dies during recovery, then converges", async () => {
    try {
      await up();
      const r = await cmd("run", { image: "busybox", cmd: ["sh", "-c", "sleep 0.5; exit 3"] });
      const id = r.result!.id as string;
      await down();
      await until(async () => existsSync(join(dataRoot, "exits", id)), 10_000);
      // Recovery finds the missed exit and dies before it records it.
      await expect(startDaemonProc(dataRoot, node, natsPort, { BERTH_FAULT: "recovery" })).rejects.toThrow(/SIGKILL/);
      await up();
      const c = (await http<C>(`/v1/containers/${id}`)).body;
      expect(c).toMatchObject({ state: "exited", exitCode: 3, pending: null });
      const { body } = await http<{ events: Ev[] }>(`/v1/containers/${id}/events`);
      expect(body.events.filter((e) => e.type === "ContainerExited")).toHaveLength(1);
      expect((await cmd("remove", { id })).ok).toBe(true);
    } finally {
      await down();
    }
  });

  it("dies in the middle of writing a snapshot, then restores from the log", async () => {
    try {
      await up({ BERTH_FAULT: "snapshot-write" });
      const r = await cmd("run", { image: "busybox", cmd: ["sleep", "1000"] });
      const { id, pid } = r.result as { id: string; pid: number };
      // A graceful stop writes a last snapshot: the daemon dies half-way through it.
      session.d!.child.kill("SIGTERM");
      await session.d!.exited;
      expect(session.d!.child.signalCode).toBe("SIGKILL");
      await session.nc!.close().catch(() => undefined);
      await up();
      expect((await http<C>(`/v1/containers/${id}`)).body).toMatchObject({ state: "running", pid });
      expect(alive(pid)).toBe(true);
      expect((await cmd("remove", { id, force: true })).ok).toBe(true);
    } finally {
      await down();
    }
  });

  async function crashAndConverge(c: Case, point: string) {
        await up({ BERTH_FAULT: `${point}:${c.before + 1}` });
        const id = await c.prep(cmd);
        const before = id ? (await http<C>(`/v1/containers/${id}`)).body : null;
        const pidBefore = before?.pid ?? null;
        // The daemon dies while this command is under way: no reply comes.
        expect(await session.diesDuring(c.verb, c.body(id), 10_000)).toBe("died");
        expect(session.d!.child.signalCode).toBe("SIGKILL");
        await session.nc!.close().catch(() => undefined);

        await up();
        // Find the container the command was about (run created a new one).
        const target = id || (await http<{ containers: { id: string; createdAt: string }[] }>("/v1/containers?all=true")).body.containers.at(-1)!.id;
        const settled = await until(async () => {
          const r = await http<C>(`/v1/containers/${target}`);
          if (r.status === 404) return { c: null };
          return r.body.pending === null && { c: r.body };
        }, 20_000);
        c.expect(settled.c, pidBefore);
        // A container that had its IP (bridge, the default) keeps it through the kill -9.
        if (before?.ip && settled.c) expect(settled.c.ip).toBe(before.ip);
        if ((settled.c?.state === "running" || settled.c?.state === "paused") && c.verb !== "remove") expect(settled.c.ip).toMatch(/^10\.89\./);

        // The log: no forbidden transition, every intent answered at most once per outcome type.
        const { body } = await http<{ events: Ev[] }>(`/v1/events?container=${target}`);
        let state: LifecycleState | "removed" | null = null;
        for (const e of body.events) {
          if (e.type === "ContainerCreated") state = "created";
          else {
            expect(state, `${e.type} after removal`).not.toBe("removed");
            const next = nextState(state as LifecycleState, e.type);
            expect(next, `${e.type} in ${state}`).not.toBeNull();
            state = next;
          }
        }
        const intents = body.events.filter((e) => OUTCOMES[e.type as EventType]);
        for (const i of intents) {
          const answers = body.events.filter((e) => e.causationId === i.eventId && OUTCOMES[i.type]!.includes(e.type));
          expect(answers.length, `${i.type} answered ${answers.length} times`).toBeLessThanOrEqual(1);
        }
        expect(body.events.filter((e) => e.type === "ContainerCreated")).toHaveLength(1);

        // The host agrees: one process at most, and none when the log says it is not running.
        const conmonPidFile = join(dataRoot, "containers", target, "conmon.pid");
        if (settled.c?.state === "running" || settled.c?.state === "paused") {
          expect(alive(settled.c.pid!)).toBe(true);
          expect(alive(Number(readFileSync(conmonPidFile, "utf8")))).toBe(true);
        } else if (settled.c) {
          if (pidBefore) expect(alive(pidBefore)).toBe(false);
        } else {
          expect(existsSync(join(dataRoot, "containers", target))).toBe(false);
          expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(target);
        }
        // Clean up this case's container and check nothing is left behind.
        if (settled.c) expect((await cmd("remove", { id: target, force: true })).ok).toBe(true);
        expect(readdirSync(join(dataRoot, "containers"))).toEqual([]);
        expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(join(dataRoot, "containers"));
        expectNoNetworkLeft();
        // A removal's release of the IP is recorded once, crash or not.
        if (c.verb === "remove") expect(body.events.filter((e) => e.type === "ContainerNetworkDetached")).toHaveLength(1);
  }
});
