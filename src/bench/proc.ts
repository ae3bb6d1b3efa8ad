// A daemon process for a bench section: its own data root, ports and node name; commands over
// NATS, queries over HTTP; and on stop, a check that nothing of it is left on the host.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { ClientConfig } from "../config.js";
import { Paths } from "../runtime/paths.js";

const here = dirname(fileURLToPath(import.meta.url));
// The daemon's own entry point, as deploy/ starts it.
export const daemonMain = resolve(here, "../daemon-main.js");

export const r1 = (x: number) => Math.round(x * 10) / 10;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};

/** A free TCP port on loopback. */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((res) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });
}

export interface BenchDaemon {
  dataRoot: string;
  node: string;
  child: ChildProcess;
  client: ClientConfig;
  nc: NatsConnection;
  /** The embedded server's `sync_interval` as its config file says. */
  natsSync: string;
}

/** `extraArgs` go to `berth daemon` (e.g. `--nats-sync always`). Resolves once /readyz is 200. */
/** A daemon on a new data root, or again on `reuse`'s (its containers, its node name). */
export async function startBenchDaemon(prefix: string, extraArgs: string[] = [], reuse?: { dataRoot: string; node: string }): Promise<BenchDaemon> {
  const dataRoot = reuse?.dataRoot ?? (await mkdtemp(join(tmpdir(), `berth-bench-${prefix}-`)));
  const node = reuse?.node ?? `bench${prefix.replace(/[^a-z0-9]/g, "").slice(0, 8)}${randomBytes(3).toString("hex")}`;
  // BENCH_LOG_DIR: each daemon's log (BENCH_LOG_LEVEL, default info) into a file there, to see where time goes.
  const logDir = process.env.BENCH_LOG_DIR;
  const out = logDir ? openSync(join(logDir, `${node}.log`), "a") : "ignore";
  const child = spawn(
    process.execPath,
    [daemonMain, "--data-root", dataRoot, "--node", node, "--nats-port", String(await freePort()), "--http-listen", "127.0.0.1:0", ...extraArgs],
    { stdio: ["ignore", out, "inherit"], env: { ...process.env, BERTH_LOG_LEVEL: logDir ? (process.env.BENCH_LOG_LEVEL ?? "info") : "warn" } },
  );
  if (typeof out === "number") closeSync(out);
  const end = Date.now() + 60_000;
  if (reuse) await rm(join(dataRoot, "client.json"), { force: true });
  while (!existsSync(join(dataRoot, "client.json"))) {
    if (Date.now() > end || child.exitCode !== null) throw new Error(`daemon (${dataRoot}) did not come up`);
    await sleep(100);
  }
  const client = JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
  while ((await fetch(`${client.http.url}/readyz`).catch(() => null))?.status !== 200) {
    if (Date.now() > end) throw new Error(`daemon (${dataRoot}) not ready`);
    await sleep(100);
  }
  const nc = await connect(natsOpts(client));
  // On an external server (`--nats-url`) there is no embedded server's config.
  const conf = join(dataRoot, "nats", "nats.conf");
  const natsSync = existsSync(conf) ? (/sync_interval:\s*"([^"]+)"/.exec(readFileSync(conf, "utf8"))?.[1] ?? "server default (2m)") : "external server";
  return { dataRoot, node, child, client, nc, natsSync };
}

/** client.json's NATS part as nats.js takes it (no user on an external server without auth). */
export function natsOpts(client: ClientConfig): { servers: string[]; user?: string; pass?: string } {
  return { servers: client.nats.servers, ...(client.nats.user ? { user: client.nats.user, pass: client.nats.pass } : {}) };
}

export async function cmd(nc: NatsConnection, verb: string, body: unknown, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const m = await nc.request(`berth.cmd.${verb}`, JSON.stringify(body), { timeout: timeoutMs });
  const r = m.json<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }>();
  if (!r.ok) throw Object.assign(new Error(`${verb}: ${r.error?.code}: ${r.error?.message}`), { code: r.error?.code });
  return r.result!;
}

export async function get<T>(d: BenchDaemon, route: string): Promise<T> {
  const res = await fetch(`${d.client.http.url}${route}`, { headers: { authorization: `Bearer ${d.client.http.token}` } });
  if (!res.ok) throw new Error(`GET ${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Run `f` over `items`, `n` at a time. */
export async function pool<T, R>(items: T[], n: number, f: (x: T, i: number) => Promise<R>): Promise<R[]> {
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
export async function removeForce(nc: NatsConnection, id: string): Promise<void> {
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

/** Every container the daemon still knows, removed (force). */
export async function removeAll(d: BenchDaemon): Promise<void> {
  const left = await get<{ containers: { id: string }[] }>(d, "/v1/containers?all=true").catch(() => ({ containers: [] }));
  await pool(left.containers, 8, (c) => removeForce(d.nc, c.id).catch((e) => console.error(`bench: remove ${c.id}: ${e}`)));
}

/**
 * runc makes the cgroup /<parent>/<id> per container and removes <id> on delete; the parents
 * (e.g. /berth/<node>) stay behind, empty. Remove `rel` under every hierarchy (cgroup v2: one; v1:
 * one per controller) and return those that are not empty.
 */
export function removeCgroup(rel: string): string[] {
  const left: string[] = [];
  for (const ctl of ["", ...(existsSync("/sys/fs/cgroup") ? readdirSync("/sys/fs/cgroup") : [])]) {
    const dir = join("/sys/fs/cgroup", ctl, rel);
    if (!existsSync(join(dir, "cgroup.procs"))) continue;
    try {
      rmdirSync(dir);
    } catch {
      left.push(`cgroup: ${dir}`);
    }
  }
  return left;
}

/**
 * Stop the daemon (SIGTERM; its containers must be gone already), then list whatever of it is
 * still on the host: processes naming its data root, mounts under it, its cgroups, its socket dir.
 * Removes the data root (unless something still uses it) and the node's cgroup parents.
 */
export async function stopBenchDaemon(d: BenchDaemon): Promise<string[]> {
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
  leaks.push(...removeCgroup(`berth/${d.node}`));
  const sockets = new Paths(d.dataRoot).socketDir;
  if (!leaks.some((l) => l.startsWith("mount") || l.startsWith("process"))) {
    await rm(d.dataRoot, { recursive: true, force: true });
    await rm(sockets, { recursive: true, force: true });
  }
  if (existsSync(d.dataRoot)) leaks.push(`dir: ${d.dataRoot}`);
  if (existsSync(sockets)) leaks.push(`dir: ${sockets}`);
  if (leaks.length) console.error(`bench: left behind by ${d.node}:\n  ${leaks.join("\n  ")}`);
  return leaks;
}

/**
 * The runtime section's run cycle: container.run of `sleep 1000` (network none, as the raw
 * baseline: a netns without interfaces; bridge is the network section's) + container.remove
 * --force, `n` times. Each cycle's ms.
 */
export async function runCycles(nc: NatsConnection, n: number): Promise<number[]> {
  const cycle: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await cmd(nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "1000"], network: { mode: "none" } });
    await cmd(nc, "container.remove", { id: r.id, force: true });
    cycle.push(performance.now() - t0);
  }
  return cycle;
}

/**
 * The runtime section's create throughput: `creates` container.create of `true` from `clients`
 * connections at once. The containers are left for the caller to remove (`ids`).
 */
export async function createThroughput(client: ClientConfig, creates: number, clients: number): Promise<{ perSec: number; lat: number[]; ids: string[] }> {
  const conns = await Promise.all(Array.from({ length: clients }, () => connect(natsOpts(client))));
  const lat: number[] = [];
  const ids: string[] = [];
  try {
    const t0 = performance.now();
    await Promise.all(
      conns.map(async (nc) => {
        for (let i = 0; i < creates / clients; i++) {
          const s = performance.now();
          const r = await cmd(nc, "container.create", { image: "busybox:latest", cmd: ["true"] });
          lat.push(performance.now() - s);
          ids.push(r.id as string);
        }
      }),
    );
    return { perSec: Math.round(creates / ((performance.now() - t0) / 1000)), lat, ids };
  } finally {
    for (const nc of conns) await nc.close();
  }
}
