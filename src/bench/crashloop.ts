// The crash-loop figures (issue 3, "Benchmark"): (a) does a crash-looping container follow its
// backoff schedule, planned delay against the one the log shows; (b) what 100 crash-looping
// containers cost the daemon in CPU. Starts a daemon process of its own (own data root, ports and
// node name), removes every container it made, stops the daemon and checks that nothing is left
// behind (processes, mounts, cgroups, socket dir, data root). Not a test: nothing passes or fails.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { get, pct, pool, r1, removeAll, removeForce, sleep, startBenchDaemon, stopBenchDaemon, cmd, type BenchDaemon } from "./proc.js";

interface Ev {
  type: string;
  at: string;
  data: Record<string, unknown>;
}
const events = async (d: BenchDaemon, id: string) => (await get<{ events: Ev[] }>(d, `/v1/containers/${id}/events`)).events;

/** Each ContainerRestartScheduled with the ContainerStartRequested that carried it out. */
function restartPairs(evs: Ev[]): { attempt: number; scheduledAt: number; plannedMs: number; actualMs: number }[] {
  const out: { attempt: number; scheduledAt: number; plannedMs: number; actualMs: number }[] = [];
  let sched: Ev | null = null;
  for (const e of evs) {
    if (e.type === "ContainerRestartScheduled") sched = e;
    else if (e.type === "ContainerStartRequested" && sched) {
      const scheduledAt = Date.parse(sched.at);
      out.push({ attempt: sched.data.attempt as number, scheduledAt, plannedMs: sched.data.delayMs as number, actualMs: Date.parse(e.at) - scheduledAt });
      sched = null;
    }
  }
  return out;
}
const relErr = (p: { plannedMs: number; actualMs: number }) => Math.abs(p.actualMs - p.plannedMs) / p.plannedMs;

/** /proc/<pid>/stat: own and reaped children's CPU, in clock ticks. */
function cpuTicks(pid: number): { self: number; children: number } {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces) start at field 3, `state`.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ").map(Number);
  return { self: f[11] + f[12], children: f[13] + f[14] };
}

export async function benchCrashloop(): Promise<Record<string, unknown>> {
  const RESTARTS = Number(process.env.BENCH_CRASHLOOP_RESTARTS ?? 8);
  const CONTAINERS = Number(process.env.BENCH_CRASHLOOP_CONTAINERS ?? 100);
  const SETTLE_S = Number(process.env.BENCH_CRASHLOOP_SETTLE_S ?? 5);
  const WINDOW_S = Number(process.env.BENCH_CRASHLOOP_WINDOW_S ?? 30);
  // A second window once every container waits the backoff's cap; off unless given (it waits ~2 min).
  const STEADY_S = Number(process.env.BENCH_CRASHLOOP_STEADY_S ?? 0);
  const clkTck = Number((await execa("getconf", ["CLK_TCK"]).catch(() => ({ stdout: "100" }))).stdout) || 100;
  const out: Record<string, unknown> = {};
  const d = await startBenchDaemon("crashloop");
  let failure: unknown = null;
  try {
    out.natsSync = d.natsSync;

    // --- (a) one container: planned backoff against the log ---
    const backoff = { initialMs: 200, maxMs: 3200 };
    const one = (await cmd(d.nc, "container.run", {
      name: "crashloop-backoff",
      image: "busybox:latest",
      cmd: ["sh", "-c", "exit 1"],
      restartPolicy: { name: "always", backoff },
    })).id as string;
    let pairs: ReturnType<typeof restartPairs> = [];
    const until = Date.now() + 120_000;
    while (Date.now() < until) {
      pairs = restartPairs(await events(d, one));
      if (pairs.length >= RESTARTS) break;
      await sleep(500);
    }
    await removeForce(d.nc, one);
    pairs = pairs.slice(0, RESTARTS);
    out.backoff = {
      policy: { name: "always", backoff },
      restarts: pairs.length,
      schedule: pairs.map((p) => ({ attempt: p.attempt, plannedMs: p.plannedMs, actualMs: p.actualMs, errPct: r1(relErr(p) * 100) })),
      maxRelErrPct: r1(Math.max(...pairs.map(relErr)) * 100),
      meanLateMs: r1(pairs.reduce((a, p) => a + p.actualMs - p.plannedMs, 0) / Math.max(1, pairs.length)),
      measured: "actual = at(ContainerStartRequested) − at(ContainerRestartScheduled), from GET /v1/containers/{id}/events",
      target: "each within 10% of plannedMs",
    };

    // --- (b) 100 crash-looping containers: the daemon's CPU ---
    const tRun0 = performance.now();
    const ids = await pool(Array.from({ length: CONTAINERS }, (_, i) => i), 8, async (i) =>
      (await cmd(d.nc, "container.run", {
        name: `crashloop-${i}`,
        image: "busybox:latest",
        cmd: ["sh", "-c", "exit 1"],
        restartPolicy: { name: "always" },
      })).id as string,
    );
    const runSecs = (performance.now() - tRun0) / 1000;
    await sleep(SETTLE_S * 1000);
    const restarts = async () =>
      (await get<{ containers: { id: string; restartCount: number }[] }>(d, "/v1/containers?all=true")).containers
        .filter((c) => ids.includes(c.id))
        .reduce((a, c) => a + c.restartCount, 0);
    const natsPid = Number(readFileSync(join(d.dataRoot, "nats", "nats-server.pid"), "utf8").trim());
    /** CPU of the daemon (and, for honesty, of what it ran and of nats-server) over `secs`. */
    // The daemon's tool helper (src/runtime/spawner.ts) starts runc and mount for it: its CPU is
    // the daemon's work too, so it is counted with it.
    const helperPids = () =>
      readdirSync("/proc")
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            const st = readFileSync(`/proc/${p}/stat`, "utf8");
            return Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === d.child.pid;
          } catch {
            return false;
          }
        })
        .map(Number)
        .filter((p) => readFileSync(`/proc/${p}/cmdline`, "utf8").includes("--max-old-space-size=64"));
    const helperTicks = () => helperPids().reduce((a, p) => a + cpuTicks(p).self, 0);
    const window = async (secs: number) => {
      const r0 = await restarts();
      const c0 = cpuTicks(d.child.pid!);
      const h0 = helperTicks();
      const n0 = cpuTicks(natsPid);
      const w0 = performance.now();
      const wallStart = Date.now();
      await sleep(secs * 1000);
      const c1 = cpuTicks(d.child.pid!);
      const h1 = helperTicks();
      const n1 = cpuTicks(natsPid);
      const wall = (performance.now() - w0) / 1000;
      const wallEnd = Date.now();
      const n = (await restarts()) - r0;
      const core = (ticks: number) => r1((ticks / clkTck / wall) * 100);
      // The schedule check again, over every restart of the 100 carried out inside the window.
      const pairs = (await pool(ids, 8, async (id) => restartPairs(await events(d, id))))
        .flat()
        .filter((p) => p.scheduledAt + p.actualMs >= wallStart && p.scheduledAt + p.actualMs <= wallEnd);
      const errs = pairs.map(relErr);
      return {
        windowSecs: r1(wall),
        restarts: n,
        restartsPerSec: r1(n / wall),
        daemonPctOfOneCore: core(c1.self - c0.self),
        daemonCpuMsPerRestart: n ? r1((((c1.self - c0.self) / clkTck) * 1000) / n) : null,
        toolHelperPctOfOneCore: core(h1 - h0),
        daemonWithHelperPctOfOneCore: core(c1.self - c0.self + h1 - h0),
        reapedChildrenPctOfOneCore: core(c1.children - c0.children),
        natsServerPctOfOneCore: core(n1.self - n0.self),
        daemonRssMB: r1(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.child.pid}/status`, "utf8"))?.[1] ?? 0) / 1024),
        scheduleInWindow: pairs.length
          ? {
              restarts: pairs.length,
              p50ErrPct: r1(pct(errs, 50) * 100),
              p99ErrPct: r1(pct(errs, 99) * 100),
              maxErrPct: r1(Math.max(...errs) * 100),
              maxLateMs: Math.max(...pairs.map((p) => p.actualMs - p.plannedMs)),
            }
          : null,
      };
    };
    out.cpu = {
      containers: CONTAINERS,
      policy: { name: "always", backoff: "default (100 ms doubling, max 60 s)" },
      runAllSecs: r1(runSecs),
      windowStartsAfterLastRunSecs: SETTLE_S,
      ...(await window(WINDOW_S)),
      measured:
        "utime+stime of the daemon's /proc/<pid>/stat over the window; reapedChildren = its cutime+cstime (runc, mount and conmon's launcher, which it waited for; conmon's monitor processes are reparented and not counted); nats-server = its own utime+stime",
      target: "daemon < 20% of one core",
    };
    if (STEADY_S > 0) {
      // Every container at the backoff's cap (60 s): the load 100 crash loops settle to.
      const capMs = 60_000;
      const tWait = performance.now();
      for (const end = Date.now() + 600_000; Date.now() < end; await sleep(5_000)) {
        const last = await pool(ids, 8, async (id) => {
          const sched = (await events(d, id)).filter((e) => e.type === "ContainerRestartScheduled");
          return (sched[sched.length - 1]?.data.delayMs as number | undefined) ?? 0;
        });
        if (last.every((ms) => ms >= capMs)) break;
      }
      out.cpuAtCap = { waitedSecs: r1((performance.now() - tWait) / 1000), ...(await window(STEADY_S)) };
    }
    const t0 = performance.now();
    await pool(ids, 8, (id) => removeForce(d.nc, id));
    out.removeAllSecs = r1((performance.now() - t0) / 1000);
  } catch (err) {
    failure = err;
    await removeAll(d); // leave no container behind
  }
  out.leaks = await stopBenchDaemon(d);
  if (failure) throw failure;
  return out;
}
