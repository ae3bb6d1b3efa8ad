// A real nats-server JetStream cluster per suite (DESIGN.md "Several nodes"): every node on its own
// free ports with its own store in one temp dir, each process killed and stopped by its pid.
// deploy/nats-cluster.sh is the same cluster for trying berth by hand.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { natsServerBinary } from "../../src/runtime/nats-server.js";
import { freePort } from "./nats.js";

export interface ClusterNode {
  name: string;
  port: number;
  clusterPort: number;
  httpPort: number;
  /** The pid now: a restart changes it. */
  pid: number;
  storeDir: string;
}

export interface TestNatsCluster {
  urls: string[];
  /** The urls comma-joined, as the daemon's --nats takes them. */
  url: string;
  nodes: ClusterNode[];
  /** Signal one server by its pid and wait until it has exited; its store stays. */
  kill(name: string, signal?: NodeJS.Signals): Promise<void>;
  /** Start it again with the same config and store; resolves once it is back in the meta group. */
  restart(name: string): Promise<void>;
  /** Stop every server it started, then remove the temp dir. */
  stop(): Promise<void>;
  /** What the harness had to do beyond the plain start (see healStrays), for a failing test's report. */
  log: string[];
}

const READY_MS = 20_000;
/** How long a node may follow the meta leader without being in its group before it is restarted. */
const STRAY_MS = 3_000;

interface MetaView {
  leader: string | null;
  size: number;
  /** Only the meta leader lists its replicas. */
  replicas: { name: string; current: boolean }[];
}

async function metaView(httpPort: number): Promise<MetaView | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${httpPort}/jsz`, { signal: AbortSignal.timeout(1_000) });
    if (!r.ok) return null;
    const j = (await r.json()) as { meta_cluster?: { leader?: string; cluster_size?: number; replicas?: { name: string; current: boolean }[] } };
    const m = j.meta_cluster;
    return { leader: m?.leader || null, size: m?.cluster_size ?? 0, replicas: m?.replicas ?? [] };
  } catch {
    return null;
  }
}

function confText(n: ClusterNode, dir: string, routes: string[]): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    `server_name: ${q(n.name)}`,
    `listen: "127.0.0.1:${n.port}"`,
    `http: "127.0.0.1:${n.httpPort}"`,
    `pid_file: ${q(join(dir, n.name, "nats-server.pid"))}`,
    `log_file: ${q(join(dir, n.name, "nats-server.log"))}`,
    `jetstream {`,
    `  store_dir: ${q(n.storeDir)}`,
    `}`,
    `cluster {`,
    `  name: "berth"`,
    `  listen: "127.0.0.1:${n.clusterPort}"`,
    // Itself included: a server skips the route to itself, and JetStream sizes a cold-started meta
    // group by the number of routes.
    `  routes: [ ${routes.map(q).join(", ")} ]`,
    `}`,
    "",
  ].join("\n");
}

/** Distinct ports: two freePort() calls may hand back the same one. */
async function distinctPorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

export async function startNatsCluster(opts: { size?: number } = {}): Promise<TestNatsCluster> {
  const size = opts.size ?? 3;
  const dir = await mkdtemp(join(tmpdir(), "berth-nats-cluster-"));
  const ports = await distinctPorts(size * 3);
  const nodes: ClusterNode[] = Array.from({ length: size }, (_, i) => ({
    name: `n${i + 1}`,
    port: ports[i * 3],
    clusterPort: ports[i * 3 + 1],
    httpPort: ports[i * 3 + 2],
    pid: 0,
    storeDir: join(dir, `n${i + 1}`, "store"),
  }));
  const routes = nodes.map((n) => `nats-route://127.0.0.1:${n.clusterPort}`);
  const children = new Map<string, { child: ChildProcess; exited: Promise<void>; done: boolean }>();
  const log: string[] = [];
  // Nodes stopped on purpose (kill, restart): their exit is no failure to report.
  const halted = new Set<string>();
  const node = (name: string) => {
    const n = nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in this cluster (${nodes.map((x) => x.name).join(", ")})`);
    return n;
  };
  const running = () => nodes.filter((n) => children.get(n.name)?.done === false);

  const launch = async (n: ClusterNode) => {
    const conf = join(dir, n.name, "nats.conf");
    await mkdir(n.storeDir, { recursive: true });
    await writeFile(conf, confText(n, dir, routes));
    // The log_file has everything once the config is read; a config or port error comes before.
    const out = openSync(join(dir, n.name, "nats-server.out"), "a");
    const child = spawn(natsServerBinary(), ["-c", conf], { stdio: ["ignore", out, out], detached: false });
    closeSync(out);
    const entry = { child, done: false, exited: Promise.resolve() };
    entry.exited = new Promise<void>((resolve) => {
      child.once("exit", () => resolve());
      child.once("error", (err) => {
        log.push(`${n.name}: could not start ${natsServerBinary()}: ${err.message}`);
        resolve();
      });
    }).then(() => {
      entry.done = true;
    });
    children.set(n.name, entry);
    if (!child.pid) {
      await entry.exited;
      throw new Error(`could not start nats-server for ${n.name}: ${log.at(-1) ?? "no pid"}`);
    }
    n.pid = child.pid;
  };

  const halt = async (n: ClusterNode, signal: NodeJS.Signals) => {
    const e = children.get(n.name);
    if (!e || e.done) return;
    try {
      process.kill(n.pid, signal);
    } catch {
      /* already gone; exit follows */
    }
    await e.exited;
  };

  // A clustered JetStream server can take seconds to shut down; stop() should not.
  const stopOne = async (n: ClusterNode) => {
    const e = children.get(n.name);
    if (!e || e.done) return;
    const late = setTimeout(() => {
      try {
        process.kill(n.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }, 10_000);
    await halt(n, "SIGTERM");
    clearTimeout(late);
  };

  const tails = async () => {
    const parts: string[] = [];
    for (const n of nodes) {
      for (const f of ["nats-server.log", "nats-server.out"]) {
        const text = await readFile(join(dir, n.name, f), "utf8").catch(() => "");
        const lines = text.trimEnd().split("\n").filter(Boolean).slice(-15);
        if (lines.length) parts.push(`--- ${n.name} ${f} (pid ${n.pid}) ---`, ...lines);
      }
    }
    return parts.join("\n");
  };

  // Agreed: every running node reports the same running meta leader, the group has its full size,
  // and the leader sees every other running node as a current replica (a restarted node has
  // caught up with the meta log).
  const views = async () => new Map(await Promise.all(running().map(async (n) => [n.name, await metaView(n.httpPort)] as const)));
  const agreed = (v: Map<string, MetaView | null>) => {
    const all = [...v.values()];
    const leader = all[0]?.leader;
    if (!leader || !v.has(leader) || !all.every((m) => m && m.leader === leader && m.size === size)) return false;
    const reps = v.get(leader)!.replicas;
    return [...v.keys()].filter((k) => k !== leader).every((k) => reps.some((r) => r.name === k && r.current));
  };
  // nats-server 2.10.27 now and then (about one cold start in ten here) settles on a meta group one
  // node short: all agree on the leader, but the leader never counts the last one, which follows
  // and never answers. Restarting that node brings it in.
  const strays = (v: Map<string, MetaView | null>) => {
    const all = [...v.values()];
    const leader = all[0]?.leader;
    if (!leader || !all.every((m) => m && m.leader === leader)) return [];
    const lead = v.get(leader);
    if (!lead || lead.size >= size) return [];
    return [...v.keys()].filter((k) => k !== leader && !lead.replicas.some((r) => r.name === k));
  };

  const waitAgreed = async (what: string, healStrays: boolean) => {
    const end = Date.now() + READY_MS;
    let strayKey = "";
    let straySince = 0;
    let last = new Map<string, MetaView | null>();
    for (;;) {
      const dead = nodes.filter((n) => children.get(n.name)?.done && !halted.has(n.name));
      if (dead.length) throw new Error(`nats-server ${dead.map((n) => n.name).join(", ")} exited while waiting for ${what}\n${await tails()}`);
      last = await views();
      if (agreed(last)) return;
      const s = healStrays ? strays(last) : [];
      if (s.join() !== strayKey) [strayKey, straySince] = [s.join(), Date.now()];
      if (s.length && Date.now() - straySince >= STRAY_MS) {
        log.push(`${s.join(", ")} followed meta leader ${[...last.values()][0]?.leader} without being in its group; restarted`);
        for (const name of s) {
          halted.add(name);
          await stopOne(node(name));
          halted.delete(name);
          await launch(node(name));
        }
        strayKey = "";
      }
      if (Date.now() > end) {
        const seen = [...last].map(([k, m]) => `${k}: ${m ? `leader ${m.leader}, size ${m.size}, replicas ${JSON.stringify(m.replicas)}` : "no answer"}`);
        throw new Error(`timed out after ${READY_MS} ms waiting for ${what}\n${seen.join("\n")}\n${await tails()}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  // If the test process dies without stop(), the servers must not outlive it.
  const reap = () => {
    for (const n of running()) {
      try {
        process.kill(n.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
  };
  process.once("exit", reap);

  const stop = async () => {
    await Promise.all(nodes.map(stopOne));
    process.removeListener("exit", reap);
    await rm(dir, { recursive: true, force: true });
  };

  try {
    for (const n of nodes) await launch(n);
    await waitAgreed(`a meta leader agreed by all ${size} nodes`, true);
  } catch (err) {
    await stop();
    throw err;
  }

  const urls = nodes.map((n) => `nats://127.0.0.1:${n.port}`);
  return {
    urls,
    url: urls.join(","),
    nodes,
    log,
    async kill(name, signal = "SIGKILL") {
      const n = node(name);
      halted.add(name);
      await halt(n, signal);
    },
    async restart(name) {
      const n = node(name);
      halted.add(name);
      await stopOne(n);
      await launch(n);
      halted.delete(name);
      await waitAgreed(`${name} back in the meta group`, false);
    },
    stop,
  };
}
