// The migration figures (issue 10, "Benchmark"), on a real 3-server nats-server cluster on
// loopback (deploy/nats-cluster.sh, free ports, a temp dir) with two daemons on it, each its own
// process, data root, node name and (chosen by itself) subnet:
// - container.migrate's downtime (the reply's downtimeMs: from the freeze to the restored
//   process's start) and command time, there and back BENCH_MIGRATE_ROUNDS (3) times, of a small
//   container and of one holding 256 MB of touched memory; against the same by hand in the same
//   run: runc checkpoint → cp -a of the image dir (standing in for the transfer) → conmon
//   --restore, of a container of the same kind; pre-copy tried once (a RuntimeError on a kernel
//   without CONFIG_MEM_SOFT_DIRTY: then "n/a");
// - the runtime section's run cycle (BENCH_MIGRATE_RUNS, 50) and create throughput
//   (BENCH_MIGRATE_CREATES, 2000, from 8 clients) on a daemon joined to the cluster (replicas 3)
//   against a daemon on its embedded server, side by side (its default fsync policy, and the
//   cluster servers' 2m).
// Run just this: `npm run build && BENCH_SECTIONS=migrate npm run bench`.
// Not a test: nothing passes or fails.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { execa } from "execa";
import { CRIU_PATH } from "../runtime/criu.js";
import { BIG, rawRound, runWarm, SMALL } from "./checkpoint.js";
import {
  cmd, createThroughput, freePort, get, pct, pool, r1, removeAll, removeForce, runCycles, sleep, startBenchDaemon, stopBenchDaemon, type BenchDaemon,
} from "./proc.js";

const here = dirname(fileURLToPath(import.meta.url));
const CLUSTER_SH = resolve(here, "../../deploy/nats-cluster.sh");
const r2 = (x: number) => Math.round(x * 100) / 100;
const median = (xs: number[]) => r1(pct(xs, 50));
const MIGRATE_TIMEOUT_MS = 600_000;
const TARGETS = { noPreCopy256MB: "≤ 2 s downtime for 256 MB without pre-copy", preCopy256MB: "≤ 0.5 s with it" };

/** Whether nothing listens on 127.0.0.1:`port`. */
async function portFree(port: number): Promise<boolean> {
  const { createServer } = await import("node:net");
  return new Promise((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
}

/** Three client ports for deploy/nats-cluster.sh, each with its route (+1000) and monitoring (+2000) port free too. */
async function clusterPorts(): Promise<number[]> {
  const taken = new Set<number>();
  const ports: number[] = [];
  while (ports.length < 3) {
    const p = await freePort();
    const all = [p, p + 1000, p + 2000];
    if (p + 2000 > 65535 || all.some((q) => taken.has(q))) continue;
    if (!(await Promise.all(all.map(portFree))).every(Boolean)) continue;
    for (const q of all) taken.add(q);
    ports.push(p);
  }
  return ports;
}

/**
 * The script's ready is an agreed meta leader; the leader may still lack a server's stats for a
 * moment ("no suitable peers for placement"), and a daemon creating its stream then fails. Ready
 * here: a stream of 3 replicas can be made.
 */
async function untilPlaceable(servers: string[], timeoutMs = 30_000): Promise<void> {
  const nc = await connect({ servers });
  try {
    const jsm = await jetstreamManager(nc);
    const name = `BENCH_PROBE_${randomBytes(3).toString("hex").toUpperCase()}`;
    for (const end = Date.now() + timeoutMs; ; await sleep(200)) {
      try {
        await jsm.streams.add({ name, num_replicas: 3, storage: StorageType.Memory });
        await jsm.streams.delete(name);
        return;
      } catch (err) {
        if (Date.now() > end) throw new Error(`the cluster cannot place a stream of 3 replicas: ${(err as Error).message}`);
      }
    }
  } finally {
    await nc.close();
  }
}

/** The pids in the cluster's pid files (DIR/nX/nats-server.pid). */
function clusterPids(dir: string): number[] {
  return ["n1", "n2", "n3"].flatMap((n) => {
    const f = join(dir, n, "nats-server.pid");
    return existsSync(f) ? [Number(readFileSync(f, "utf8").trim())].filter((p) => p > 0) : [];
  });
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The runtime section's run cycle and create throughput, on daemon `d`; its containers removed after. */
async function commandFigures(d: BenchDaemon, runs: number, creates: number, clients: number) {
  const cycle = await runCycles(d.nc, runs);
  const { perSec, lat, ids } = await createThroughput(d.client, creates, clients);
  await pool(ids, 8, (id) => removeForce(d.nc, id));
  return {
    runCycle: { runs, medianMs: r1(pct(cycle, 50)), p99Ms: r1(pct(cycle, 99)) },
    createThroughput: { creates, clients, perSec, p50Ms: r1(pct(lat, 50)), p99Ms: r1(pct(lat, 99)) },
    natsSync: d.natsSync,
  };
}

type Migration = { downtimeMs: number; commandMs: number };

/**
 * Where each migration's downtime went, from the container's events: the source's part (the
 * freeze, dump and upload: data.dumpedAt → ContainerMigrationDumped) and the target's (it sees
 * that event, fetches, unpacks and restores: → ContainerMigrated's startedAt).
 */
async function phases(d: BenchDaemon, id: string): Promise<{ sourceMs: number[]; targetMs: number[]; frozenMs: number[] }> {
  type Ev = { type: string; at: string; data: { checkpointId?: string; dumpedAt?: string; startedAt?: string; frozenMs?: number } };
  const { events } = await get<{ events: Ev[] }>(d, `/v1/containers/${id}/events`);
  const sourceMs: number[] = [];
  const targetMs: number[] = [];
  const frozenMs: number[] = [];
  for (const dumped of events.filter((e) => e.type === "ContainerMigrationDumped")) {
    const moved = events.find((e) => e.type === "ContainerMigrated" && e.data.checkpointId === dumped.data.checkpointId);
    sourceMs.push(Date.parse(dumped.at) - Date.parse(dumped.data.dumpedAt!));
    frozenMs.push(dumped.data.frozenMs ?? 0);
    if (moved) targetMs.push(Date.parse(moved.data.startedAt!) - Date.parse(dumped.at));
  }
  return { sourceMs, targetMs, frozenMs };
}

/**
 * `id` (on a) migrated to b and back `rounds` times: the reply's downtimes and command times,
 * and where the downtime went. The archive's size when it went through the object store.
 */
async function thereAndBack(a: BenchDaemon, b: BenchDaemon, id: string, rounds: number) {
  const moves: Migration[] = [];
  for (let i = 0; i < rounds; i++) {
    moves.push(i === 0 ? await firstMigrate(a, id, b.node) : await migrate(a, id, b.node));
    moves.push(await migrate(a, id, a.node));
  }
  const stored = (await get<{ checkpoints: { sizeBytes: number }[] }>(a, `/v1/checkpoints?container=${id}`)).checkpoints;
  const split = await phases(a, id);
  const down = moves.map((m) => m.downtimeMs);
  return {
    moves,
    down,
    berth: {
      downtimeMs: median(down), downtimeMaxMs: Math.max(...down),
      commandMs: median(moves.map((m) => m.commandMs)), totalCommandMs: Math.round(moves.reduce((s, m) => s + m.commandMs, 0)),
      ...(stored.length ? { archiveMB: r2(pct(stored.map((c) => c.sizeBytes), 50) / 1e6) } : {}),
      frozenMs: median(split.frozenMs),
      sourceDumpSendMs: median(split.sourceMs), targetFetchRestoreMs: median(split.targetMs),
    },
  };
}

/** container.migrate of `id` to `targetNode`: the reply's downtime and the command's wall time. */
async function migrate(d: BenchDaemon, id: string, targetNode: string, preCopy = false): Promise<Migration> {
  const t0 = performance.now();
  const r = await cmd(d.nc, "container.migrate", { id, targetNode, ...(preCopy ? { preCopy } : {}) }, MIGRATE_TIMEOUT_MS);
  const commandMs = performance.now() - t0;
  if (r.node !== targetNode) throw new Error(`container.migrate: ${id} is on ${String(r.node)}, not ${targetNode}`);
  return { downtimeMs: r.downtimeMs as number, commandMs };
}

/** The first migration to a daemon just started may find its node or image not yet in the model: try again a while. */
async function firstMigrate(d: BenchDaemon, id: string, targetNode: string): Promise<Migration> {
  for (let i = 0; ; i++) {
    try {
      return await migrate(d, id, targetNode);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (i >= 100 || !["InvalidArgument", "NotFound", "Unavailable"].includes(code ?? "")) throw err;
      await sleep(100);
    }
  }
}

export async function benchMigrate(): Promise<Record<string, unknown>> {
  if (!existsSync(CRIU_PATH)) return { skipped: `${CRIU_PATH} is missing (deploy/setup.sh installs it)` };
  const ROUNDS = Number(process.env.BENCH_MIGRATE_ROUNDS ?? 3);
  const RUNS = Number(process.env.BENCH_MIGRATE_RUNS ?? 50);
  const CREATES = Number(process.env.BENCH_MIGRATE_CREATES ?? 2000);
  const CLIENTS = 8;
  const out: Record<string, unknown> = { rounds: ROUNDS, targets: TARGETS };

  // --- the embedded server, for the side-by-side: as the runtime section runs it (its fsync
  // policy: BERTH_NATS_SYNC, default always), and with the cluster's (nats-server's default, 2m) ---
  const onEmbedded = async (args: string[]) => {
    const e = await startBenchDaemon("migemb", args);
    try {
      return await commandFigures(e, RUNS, CREATES, CLIENTS);
    } finally {
      await removeAll(e).catch(() => undefined);
      await stopBenchDaemon(e);
    }
  };
  const embedded = await onEmbedded([]);
  const embedded2m = await onEmbedded(["--nats-sync", "2m"]);

  // --- the cluster ---
  const dir = await mkdtemp(join(tmpdir(), "berth-bench-cluster-"));
  const daemons: BenchDaemon[] = [];
  let pids: number[] = [];
  try {
    const ports = await clusterPorts();
    const started = await execa(CLUSTER_SH, ["start", dir], { env: { ...process.env, BERTH_CLUSTER_PORTS: ports.join(",") } });
    pids = clusterPids(dir);
    const url = started.stdout.trim().split("\n").at(-1)!;
    await untilPlaceable(url.split(","));
    const joined = ["--nats-url", url, "--replicas", "3"];

    // One daemon on the cluster first: the same figures as on the embedded server.
    const a = await startBenchDaemon("bm1", joined);
    daemons.push(a);
    const cluster = await commandFigures(a, RUNS, CREATES, CLIENTS);
    out.commands = {
      embedded,
      embeddedSync2m: embedded2m,
      cluster3Replicas3: cluster,
      runCycleRatio: r2(cluster.runCycle.medianMs / embedded.runCycle.medianMs),
      createThroughputRatio: r2(cluster.createThroughput.perSec / embedded.createThroughput.perSec),
      runCycleRatioSync2m: r2(cluster.runCycle.medianMs / embedded2m.runCycle.medianMs),
      createThroughputRatioSync2m: r2(cluster.createThroughput.perSec / embedded2m.createThroughput.perSec),
      note: "the runtime section's run + remove cycle (network none) and create throughput (8 clients) on a daemon on its embedded server (embedded: its default fsync policy or BERTH_NATS_SYNC; embeddedSync2m: --nats-sync 2m, the cluster servers' policy, as deploy/nats-cluster.sh sets none), and on a daemon joined to the 3-server cluster (--replicas 3); runCycleRatio: cluster / embedded median, createThroughputRatio: cluster / embedded creates per second",
    };

    // --- migration downtime: a there and back ROUNDS times ---
    const b = await startBenchDaemon("bm2", joined);
    daemons.push(b);
    // A second pair whose migrations go through the object store (BENCH_MIGRATE_STORE=0: none).
    let storePair: [BenchDaemon, BenchDaemon] | null = null;
    if (process.env.BENCH_MIGRATE_STORE !== "0") {
      const viaStore = [...joined, "--migration-transfer", "store"];
      storePair = [await startBenchDaemon("bs1", viaStore), await startBenchDaemon("bs2", viaStore)];
      daemons.push(...storePair);
    }
    const work = join(a.dataRoot, "raw-migrations");
    for (const [label, argv] of [["small", SMALL], ["touched256MB", BIG]] as const) {
      const id = await runWarm(a, `mig-${label}`, argv, a.node);
      const direct = await thereAndBack(a, b, id, ROUNDS);
      let preCopy: string | undefined;
      if (label === "touched256MB") {
        try {
          const m = await migrate(a, id, b.node, true);
          preCopy = `${m.downtimeMs} ms downtime (${Math.round(m.commandMs)} ms command)`;
        } catch (err) {
          preCopy = `n/a (${(err as Error).message})`;
        }
      }
      await removeForce(a.nc, id);

      // The same through the object store (--migration-transfer store), once there and back.
      let store: Awaited<ReturnType<typeof thereAndBack>>["berth"] | undefined;
      if (storePair) {
        const sid = await runWarm(storePair[0], `mig-store-${label}`, argv, storePair[0].node);
        store = (await thereAndBack(storePair[0], storePair[1], sid, 1)).berth;
        await removeForce(storePair[0].nc, sid);
      }

      // The same by hand, on containers of the same kind on the first node.
      const raw = { dump: [] as number[], copy: [] as number[], restore: [] as number[], downtime: [] as number[], lazyRestore: [] as number[], lazyDowntime: [] as number[] };
      for (let i = 0; i < ROUNDS; i++) {
        const rid = await runWarm(a, `raw-mig-${label}-${i}`, argv, a.node);
        const r = await rawRound(a, rid, work, { transfer: true });
        raw.dump.push(r.dumpMs);
        raw.copy.push(r.copyMs);
        raw.restore.push(r.restoreMs);
        raw.downtime.push(r.dumpMs + r.copyMs + r.restoreMs);
        await removeForce(a.nc, rid);
        if (label !== "touched256MB") continue;
        // And with the restore berth makes of a dump this big: memory from CRIU's lazy-pages daemon.
        const lid = await runWarm(a, `raw-mig-lazy-${i}`, argv, a.node);
        const l = await rawRound(a, lid, work, { transfer: true, lazy: true });
        raw.lazyRestore.push(l.restoreMs);
        raw.lazyDowntime.push(l.dumpMs + l.copyMs + l.restoreMs);
        await removeForce(a.nc, lid);
      }
      await rm(work, { recursive: true, force: true });
      out[label] = {
        migrations: direct.moves.length,
        berth: direct.berth,
        ...(store ? { berthViaStore: store, storeVsDirect: r2(store.downtimeMs / direct.berth.downtimeMs) } : {}),
        raw: { downtimeMs: median(raw.downtime), runcCheckpointMs: median(raw.dump), copyMs: median(raw.copy), conmonRestoreMs: median(raw.restore) },
        downtimeVsRaw: r2(pct(direct.down, 50) / pct(raw.downtime, 50)),
        ...(raw.lazyDowntime.length
          ? { rawLazyPages: { downtimeMs: median(raw.lazyDowntime), conmonRestoreMs: median(raw.lazyRestore) }, downtimeVsRawLazyPages: r2(pct(direct.down, 50) / pct(raw.lazyDowntime, 50)) }
          : {}),
        ...(preCopy ? { preCopy } : {}),
      };
    }
    out.note = "berth: container.migrate between two daemons on a 3-server cluster on loopback (downtimeMs from the reply: the source's freeze to the restored process's start on the target; commandMs: the request's wall time), there and back; raw: runc checkpoint → cp -a of the image dir (the transfer) → conmon --restore on the same node, downtime = the three together. berth: the default direct transfer (the target takes the archive from the source's daemon over NATS while it unpacks); berthViaStore: a second pair of daemons with --migration-transfer store (the archive uploaded to the object store, 3 replicas, then fetched), once there and back; archiveMB: the stored archives' size (GET /v1/checkpoints; the direct transfer stores none); frozenMs: CRIU's frozen time of the final dumps; sourceDumpSendMs (freeze → ContainerMigrationDumped: dump, and with the store tar and upload) and targetFetchRestoreMs (→ the restored start: fetch, unpack, verify, restore) split the downtime, from the container's events.";
    out.clusterLog = started.stderr.split("\n").filter((l) => /restart|SIGKILL/i.test(l));
    return out;
  } finally {
    if (daemons[0]) await removeAll(daemons[0]).catch((err) => console.error(`bench: migrate cleanup: ${err}`));
    for (const d of daemons.reverse()) await stopBenchDaemon(d).catch((err) => console.error(`bench: migrate cleanup: ${err}`));
    if (existsSync(join(dir, "ports"))) await execa(CLUSTER_SH, ["stop", dir]).catch((err) => console.error(`bench: nats-cluster.sh stop: ${err}`));
    pids = [...new Set([...pids, ...clusterPids(dir)])];
    const left = pids.filter(alive);
    if (left.length) console.error(`bench: nats-server pids still running after stop: ${left.join(", ")} (${dir} kept)`);
    else await rm(dir, { recursive: true, force: true });
    out.clusterPids = pids;
  }
}

/** The section's figures as lines for the table (main.ts prints them). */
export function migrateLines(m: Record<string, unknown>): string[] {
  if (m.skipped) return [`migrate: skipped (${String(m.skipped)})`];
  type B = { downtimeMs: number; commandMs: number; totalCommandMs: number; archiveMB?: number; sourceDumpSendMs: number; targetFetchRestoreMs: number };
  type K = { berth: B; berthViaStore?: B; storeVsDirect?: number; raw: { downtimeMs: number }; downtimeVsRaw: number; rawLazyPages?: { downtimeMs: number }; downtimeVsRawLazyPages?: number; migrations: number; preCopy?: string };
  const lines: string[] = [];
  for (const label of ["small", "touched256MB"]) {
    const k = m[label] as K | undefined;
    if (!k) continue;
    lines.push(
      `migrate ${label}: downtime berth ${k.berth.downtimeMs} ms (median of ${k.migrations}) vs raw ${k.raw.downtimeMs} ms, ratio ${k.downtimeVsRaw}; command ${k.berth.commandMs} ms median, ${k.berth.totalCommandMs} ms total; source ${k.berth.sourceDumpSendMs} ms + target ${k.berth.targetFetchRestoreMs} ms` +
        (label === "touched256MB" ? `  [target ${TARGETS.noPreCopy256MB}]` : ""),
    );
    const v = k.berthViaStore;
    if (v) lines.push(`migrate ${label} via the object store: downtime ${v.downtimeMs} ms (${k.storeVsDirect}× direct); archive ${v.archiveMB} MB; source ${v.sourceDumpSendMs} ms + target ${v.targetFetchRestoreMs} ms`);
    if (k.rawLazyPages) lines.push(`migrate ${label}: raw with a lazy-pages restore ${k.rawLazyPages.downtimeMs} ms, berth / that ${k.downtimeVsRawLazyPages}`);
    if (k.preCopy) lines.push(`migrate ${label} pre-copy: ${k.preCopy}  [target ${TARGETS.preCopy256MB}]`);
  }
  type F = { runCycle: { medianMs: number }; createThroughput: { perSec: number; p99Ms: number }; natsSync: string };
  const c = m.commands as { embedded: F; embeddedSync2m: F; cluster3Replicas3: F; runCycleRatio: number; createThroughputRatio: number; runCycleRatioSync2m: number; createThroughputRatioSync2m: number } | undefined;
  if (c) {
    const e = c.embedded;
    const e2 = c.embeddedSync2m;
    const k = c.cluster3Replicas3;
    lines.push(`run cycle: cluster (3 servers, replicas 3) ${k.runCycle.medianMs} ms vs embedded (sync ${e.natsSync}) ${e.runCycle.medianMs} ms median, ratio ${c.runCycleRatio}; vs embedded (sync 2m) ${e2.runCycle.medianMs} ms, ratio ${c.runCycleRatioSync2m}`);
    lines.push(
      `create throughput: cluster ${k.createThroughput.perSec}/s (p99 ${k.createThroughput.p99Ms} ms) vs embedded (sync ${e.natsSync}) ${e.createThroughput.perSec}/s (p99 ${e.createThroughput.p99Ms} ms), ratio ${c.createThroughputRatio}; ` +
        `vs embedded (sync 2m) ${e2.createThroughput.perSec}/s (p99 ${e2.createThroughput.p99Ms} ms), ratio ${c.createThroughputRatioSync2m}`,
    );
  }
  return lines;
}
