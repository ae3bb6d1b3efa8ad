// The local checkpoints' figures (issue 11, "Benchmark"), on a nats-server of its own (free port,
// temp store dir) that the bench kills and starts again:
// - offline start: N containers (1 and BENCH_OFFLINE_N, 50) marked berth.io/checkpoint=true run
//   on a daemon joined to that server; the daemon is stopped, their processes killed (the
//   reboot) and the server killed; a new daemon (--offline-after 1) starts: the time from its
//   spawn to every one of them running again from its copy, less the one-second wait, against
//   their container.run through the API (4 at a time) beforehand, and a normal start of the same
//   daemon with the log there and nothing to start (its time to ready);
// - the journal's flush: BENCH_OFFLINE_FACTS (10,000) journaled facts (exits and starts of the N
//   containers) appended when a daemon starts with the log there: facts per second, from that
//   start's time to ready against the same start with an empty journal.
// Run just this: `npm run build && BENCH_SECTIONS=offline npm run bench`. Nothing passes or fails.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import type { ClientConfig } from "../config.js";
import { natsServerBinary } from "../runtime/nats-server.js";
import { Journal } from "../runtime/journal.js";
import { Paths } from "../runtime/paths.js";
import { cmd, daemonMain, freePort, natsOpts, pool, r1, removeAll, sleep, startBenchDaemon, stopBenchDaemon, type BenchDaemon } from "./proc.js";

const OFFLINE_AFTER_S = 1;

interface Server {
  url: string;
  start(): Promise<void>;
  kill(): Promise<void>;
}

async function natsServer(): Promise<Server & { remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-offnats-"));
  const port = await freePort();
  let child: ChildProcess | null = null;
  const s = {
    url: `nats://127.0.0.1:${port}`,
    async start() {
      child = spawn(natsServerBinary(), ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
      for (let i = 0; i < 100; i++) {
        const nc = await connect({ servers: s.url, reconnect: false }).catch(() => null);
        if (nc) return void (await nc.close());
        await sleep(100);
      }
      throw new Error("bench nats-server did not come up");
    },
    async kill() {
      const c = child;
      if (!c || c.exitCode !== null) return;
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await gone;
    },
    async remove() {
      await s.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  await s.start();
  return s;
}

async function stopChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  await gone;
}

/** The daemon of `d`'s data root and node spawned again; resolves once its client.json is there (offline or ready). */
async function respawn(d: BenchDaemon, args: string[]): Promise<{ child: ChildProcess; client: () => Promise<ClientConfig> }> {
  const clientJson = join(d.dataRoot, "client.json");
  await rm(clientJson, { force: true });
  const child = spawn(process.execPath, [daemonMain, "--data-root", d.dataRoot, "--node", d.node, "--nats-port", String(await freePort()), "--http-listen", "127.0.0.1:0", ...args], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, BERTH_LOG_LEVEL: "warn" },
  });
  return {
    child,
    client: async () => {
      for (const end = Date.now() + 120_000; !existsSync(clientJson); await sleep(20)) if (Date.now() > end || child.exitCode !== null) throw new Error("bench daemon did not come up");
      return JSON.parse(await readFile(clientJson, "utf8")) as ClientConfig;
    },
  };
}

async function getJson<T>(client: ClientConfig, route: string): Promise<{ status: number; body: T | null }> {
  const res = await fetch(client.http.url + route, { headers: { authorization: `Bearer ${client.http.token}` } }).catch(() => null);
  if (!res) return { status: 0, body: null };
  return { status: res.status, body: (await res.json().catch(() => null)) as T | null };
}

async function untilReady(client: () => Promise<ClientConfig>): Promise<void> {
  for (const end = Date.now() + 300_000; ; await sleep(20)) {
    if ((await getJson(await client(), "/readyz")).status === 200) return;
    if (Date.now() > end) throw new Error("bench daemon not ready");
  }
}

/** One round for `n` critical containers: the offline start, and the flush of `facts` journaled facts. */
async function round(n: number, facts: number): Promise<Record<string, unknown>> {
  const server = await natsServer();
  const args = ["--nats-url", server.url, "--offline-after", String(OFFLINE_AFTER_S)];
  let d = await startBenchDaemon(`off${n}`, args);
  try {
    const tRun = performance.now();
    const ids = await pool(Array.from({ length: n }, (_, i) => i), 4, async (i) =>
      (await cmd(d.nc, "container.run", { name: `crit-${i}`, image: "busybox", cmd: ["sleep", "100000"], network: { mode: "none" }, annotations: { "berth.io/checkpoint": "true" } }, 120_000)).id as string,
    );
    const onlineRunMs = performance.now() - tRun;
    const copies = new Paths(d.dataRoot).localCheckpointsDir;
    for (const end = Date.now() + 60_000; (await readdir(copies)).length < n; await sleep(50)) if (Date.now() > end) throw new Error("local copies not written");
    const pids = (await getJson<{ containers: { id: string; pid: number }[] }>(d.client, "/v1/containers")).body!.containers.filter((c) => ids.includes(c.id)).map((c) => c.pid);

    // The baseline: a normal start with the log there and the containers running (time to ready).
    await d.nc.close();
    await stopChild(d.child);
    let t = performance.now();
    let p = await respawn(d, args);
    await untilReady(p.client);
    const normalStartMs = performance.now() - t;
    await stopChild(p.child);

    // The reboot with the log away, then the offline start.
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await server.kill();
    t = performance.now();
    p = await respawn(d, args);
    const client = await p.client();
    for (const end = Date.now() + 300_000; ; await sleep(20)) {
      const r = await getJson<{ containers: { state: string }[] }>(client, "/v1/containers");
      if (r.body?.containers?.filter((c) => c.state === "running").length === n) break;
      if (Date.now() > end) throw new Error("offline start did not bring every container up");
    }
    const offlineStartMs = performance.now() - t - OFFLINE_AFTER_S * 1000;
    // The log back: the span's journal (n starts) flushed, recovery, ready.
    await server.start();
    t = performance.now();
    await untilReady(p.client);
    const backToReadyMs = performance.now() - t;
    await stopChild(p.child);

    // The flush rate: `facts` exits and starts of these containers journaled, against an empty journal.
    t = performance.now();
    p = await respawn(d, args);
    await untilReady(p.client);
    const emptyStartMs = performance.now() - t;
    await stopChild(p.child);
    const journal = await Journal.open(new Paths(d.dataRoot).offlineJournal);
    const since = new Date().toISOString();
    await journal.append({ id: randomUUID(), subject: `berth.ev.node.${d.node}`, type: "NodeOffline", data: { since }, at: since });
    const at = () => new Date().toISOString();
    await Promise.all(Array.from({ length: facts }, (_, i) => {
      const id = ids[i % n];
      const round = Math.floor(i / n);
      // Each container: exit, start, exit, … ending with an exit (no fake pid left running).
      return journal.append(round % 2 === 0
        ? { id: randomUUID(), subject: `berth.ev.container.${id}`, type: "ContainerExited", data: { exitCode: 0, oomKilled: false, exitedAt: at() }, at: at() }
        : { id: randomUUID(), subject: `berth.ev.container.${id}`, type: "ContainerStarted", data: { pid: 1, startedAt: at() }, at: at() });
    }));
    await journal.close();
    t = performance.now();
    p = await respawn(d, args);
    await untilReady(p.client);
    const flushStartMs = performance.now() - t;
    const flushMs = Math.max(1, flushStartMs - emptyStartMs);

    // Back to a daemon the bench can remove everything through.
    const c = await p.client();
    d = { ...d, child: p.child, client: c, nc: await connect(natsOpts(c)) };
    return {
      containers: n,
      offlineStartMs: r1(offlineStartMs),
      perContainerMs: r1(offlineStartMs / n),
      onlineRunMs: r1(onlineRunMs),
      offlineVsOnlineRun: r1(offlineStartMs / onlineRunMs),
      normalStartMs: r1(normalStartMs),
      offlineVsNormal: r1(offlineStartMs / normalStartMs),
      backToReadyMs: r1(backToReadyMs),
      journaledFacts: facts,
      flushMs: r1(flushMs),
      factsPerSec: Math.round((facts / flushMs) * 1000),
    };
  } finally {
    await removeAll(d).catch(() => undefined);
    const leaks = await stopBenchDaemon(d).catch((e) => [String(e)]);
    if (leaks.length) console.error(`bench offline: left behind: ${leaks.join("; ")}`);
    await server.remove();
  }
}

export async function benchOffline(): Promise<Record<string, unknown>> {
  const n = Number(process.env.BENCH_OFFLINE_N ?? 50);
  const facts = Number(process.env.BENCH_OFFLINE_FACTS ?? 10_000);
  return {
    one: await round(1, Math.min(facts, 1000)),
    many: await round(n, facts),
    note: `offlineStartMs: from the daemon's spawn to every marked container running from its copy, less --offline-after (${OFFLINE_AFTER_S} s); onlineRunMs: the same containers' container.run through the API beforehand (4 at a time), the reference; normalStartMs: the same daemon's start to ready with the log there (its containers running); backToReadyMs: from the server's return to ready (connect, replay, the span's flush, recovery); flushMs: a start with the journaled facts less one with an empty journal. Containers: busybox sleep, network none.`,
  };
}
