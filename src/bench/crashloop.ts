// The crash-loop figures (issue 3, "Benchmark"): (a) does a crash-looping container follow its
// backoff schedule, planned delay against the one the log shows; (b) what 100 crash-looping
// containers cost the daemon in CPU. Starts a daemon process of its own (own data root, ports and
// node name), removes every container it made, stops the daemon and checks that nothing is left
// behind (processes, mounts, cgroups, socket dir, data root). Not a test: nothing passes or fails.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { execa } from "execa";
import type { ClientConfig } from "../config.js";
import { Paths } from "../runtime/paths.js";

const here = dirname(fileURLToPath(import.meta.url));
const cli = resolve(here, "../cli/main.js");

const r1 = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });
}

interface Daemon {
  dataRoot: string;
  node: string;
  child: ChildProcess;
  client: ClientConfig;
  nc: NatsConnection;
}

async function startDaemon(): Promise<Daemon> {
  const dataRoot = await mkdtemp(join(tmpdir(), "berth-bench-crashloop-"));
  const node = `benchcl${randomBytes(3).toString("hex")}`;
  const child = spawn(
    process.execPath,
    [cli, "daemon", "--data-root", dataRoot, "--node", node, "--nats-port", String(await freePort()), "--http-listen", "127.0.0.1:0"],
    { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, BERTH_LOG_LEVEL: "warn" } },
  );
  const end = Date.now() + 60_000;
  while (!existsSync(join(dataRoot, "client.json"))) {
    if (Date.now() > end || child.exitCode !== null) throw new Error("daemon did not come up");
    await sleep(100);
  }
  const client = JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
  while ((await fetch(`${client.http.url}/readyz`).catch(() => null))?.status !== 200) {
    if (Date.now() > end) throw new Error("daemon not ready");
    await sleep(100);
  }
  const nc = await connect({ servers: client.nats.servers, user: client.nats.user, pass: client.nats.pass });
  return { dataRoot, node, child, client, nc };
}

async function cmd(nc: NatsConnection, verb: string, body: unknown): Promise<Record<string, unknown>> {
  const m = await nc.request(`berth.cmd.${verb}`, JSON.stringify(body), { timeout: 60_000 });
  const r = m.json<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }>();
  if (!r.ok) throw Object.assign(new Error(`${verb}: ${r.error?.code}: ${r.error?.message}`), { code: r.error?.code });
  return r.result!;
}

async function get<T>(d: Daemon, route: string): Promise<T> {
  const res = await fetch(`${d.client.http.url}${route}`, { headers: { authorization: `Bearer ${d.client.http.token}` } });
  if (!res.ok) throw new Error(`GET ${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

interface Ev {
  type: string;
  at: string;
  data: Record<string, unknown>;
}
const events = async (d: Daemon, id: string) => (await get<{ events: Ev[] }>(d, `/v1/containers/${id}/events`)).events;

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

/** Run `f` over `items`, `n` at a time. */
async function pool<T, R>(items: T[], n: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i], i);
      }
    }),
  );
  return out;
}

/** Force-remove; a command racing an in-flight intent may get Conflict, so try again. */
async function removeForce(nc: NatsConnection, id: string): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await cmd(nc, "container.remove", { id, force: true });
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "NotFound") return;
      if (code !== "Conflict" || i >= 50) throw err;
      await sleep(100);
    }
  }
}

/** Stop the daemon, then list whatever of it is still on the host; remove the data root. */
async function stopAndCheck(d: Daemon): Promise<string[]> {
  await d.nc.close().catch(() => undefined);
  if (d.child.exitCode === null) {
    const gone = new Promise((r) => d.child.once("exit", r));
    d.child.kill("SIGTERM");
    const t = setTimeout(() => d.child.kill("SIGKILL"), 30_000);
    await gone;
    clearTimeout(t);
  }
  const leaks: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      const cl = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cl.includes(d.dataRoot)) leaks.push(`process ${pid}: ${cl.trim().slice(0, 160)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (line.includes(d.dataRoot)) leaks.push(`mount: ${line.split(" ")[4]}`);
  }
  // runc makes /berth/<node>/<id> per container and removes <id>; the per-node parents stay
  // behind (empty): remove those, and report any that is not empty.
  for (const ctl of existsSync("/sys/fs/cgroup") ? readdirSync("/sys/fs/cgroup") : []) {
    const dir = join("/sys/fs/cgroup", ctl, "berth", d.node);
    if (!existsSync(dir)) continue;
    try {
      rmdirSync(dir);
    } catch {
      leaks.push(`cgroup: ${dir}`);
    }
  }
  const sockets = new Paths(d.dataRoot).socketDir;
  if (!leaks.some((l) => l.startsWith("mount") || l.startsWith("process"))) {
    await rm(d.dataRoot, { recursive: true, force: true });
    await rm(sockets, { recursive: true, force: true });
  }
  if (existsSync(d.dataRoot)) leaks.push(`dir: ${d.dataRoot}`);
  if (existsSync(sockets)) leaks.push(`dir: ${sockets}`);
  return leaks;
}

export async function benchCrashloop(): Promise<Record<string, unknown>> {
  const RESTARTS = Number(process.env.BENCH_CRASHLOOP_RESTARTS ?? 8);
  const CONTAINERS = Number(process.env.BENCH_CRASHLOOP_CONTAINERS ?? 100);
  const SETTLE_S = Number(process.env.BENCH_CRASHLOOP_SETTLE_S ?? 5);
  const WINDOW_S = Number(process.env.BENCH_CRASHLOOP_WINDOW_S ?? 30);
  const clkTck = Number((await execa("getconf", ["CLK_TCK"]).catch(() => ({ stdout: "100" }))).stdout) || 100;
  const out: Record<string, unknown> = {};
  const d = await startDaemon();
  let failure: unknown = null;
  try {
    out.natsSync = /sync_interval:\s*"([^"]+)"/.exec(readFileSync(join(d.dataRoot, "nats", "nats.conf"), "utf8"))?.[1] ?? "server default (2m)";

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
    const r0 = await restarts();
    const c0 = cpuTicks(d.child.pid!);
    const n0 = cpuTicks(natsPid);
    const w0 = performance.now();
    const wallStart = Date.now();
    await sleep(WINDOW_S * 1000);
    const c1 = cpuTicks(d.child.pid!);
    const n1 = cpuTicks(natsPid);
    const wall = (performance.now() - w0) / 1000;
    const wallEnd = Date.now();
    const r1_ = await restarts();
    const core = (ticks: number) => r1(((ticks / clkTck) / wall) * 100);
    // The same schedule check over every restart of the 100 that was planned inside the window.
    const loaded = (await pool(ids, 8, async (id) => restartPairs(await events(d, id))))
      .flat()
      .filter((p) => p.scheduledAt >= wallStart && p.scheduledAt + p.plannedMs <= wallEnd);
    out.cpu = {
      containers: CONTAINERS,
      policy: { name: "always", backoff: "default (100 ms doubling, max 60 s)" },
      runAllSecs: r1(runSecs),
      windowSecs: r1(wall),
      windowStartsAfterLastRunSecs: SETTLE_S,
      restarts: r1_ - r0,
      restartsPerSec: r1((r1_ - r0) / wall),
      daemonPctOfOneCore: core(c1.self - c0.self),
      reapedChildrenPctOfOneCore: core(c1.children - c0.children),
      natsServerPctOfOneCore: core(n1.self - n0.self),
      measured: "utime+stime of the daemon's /proc/<pid>/stat over the window; reapedChildren = cutime+cstime (runc and conmon's launcher it waited for; the conmon monitors are reparented and not counted); nats-server = its own utime+stime",
      scheduleUnderLoad: {
        restarts: loaded.length,
        p50ErrPct: r1(pct(loaded.map(relErr), 50) * 100),
        p99ErrPct: r1(pct(loaded.map(relErr), 99) * 100),
        maxRelErrPct: r1(Math.max(...loaded.map(relErr)) * 100),
        maxLateMs: Math.max(...loaded.map((p) => p.actualMs - p.plannedMs)),
      },
      target: "daemon < 20% of one core",
    };
    const t0 = performance.now();
    await pool(ids, 8, (id) => removeForce(d.nc, id));
    out.removeAllSecs = r1((performance.now() - t0) / 1000);
  } catch (err) {
    failure = err;
    // Leave no container behind: everything this daemon still knows goes.
    const left = await get<{ containers: { id: string }[] }>(d, "/v1/containers?all=true").catch(() => ({ containers: [] }));
    await pool(left.containers, 8, (c) => removeForce(d.nc, c.id).catch((e) => console.error(`crashloop bench: remove ${c.id}: ${e}`)));
  }
  const leaks = await stopAndCheck(d);
  out.leaks = leaks;
  if (leaks.length) console.error(`crashloop bench: left behind:\n  ${leaks.join("\n  ")}`);
  if (failure) throw failure;
  return out;
}
