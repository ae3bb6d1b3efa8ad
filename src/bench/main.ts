// `npm run bench`: figures and ratios against the raw tools, measured in the same run.
// Starts its own daemon (a child process with its own data root and ports), prints a table and
// writes bench-results/<timestamp>.json. Not a test: nothing here passes or fails.
import { rawCycle } from "./raw.js";
import { benchNetwork } from "./network.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { execa } from "execa";
import type { ClientConfig } from "../config.js";
import { Paths } from "../runtime/paths.js";
import { benchRecovery } from "./recovery.js";
import { benchCrashloop } from "./crashloop.js";
import { benchNatsSync } from "./nats-sync.js";
import { benchLogs } from "./logs.js";
import { removeCgroup, freePort, runCycles, createThroughput } from "./proc.js";
import { benchRestart } from "./restart.js";
import { benchExec } from "./exec.js";
import { benchCli } from "./cli.js";
import { benchUpgrade } from "./upgrade.js";
import { benchCheckpoint } from "./checkpoint.js";
import { benchMigrate, migrateLines } from "./migrate.js";
import { benchOffline } from "./offline.js";

const here = dirname(fileURLToPath(import.meta.url));
// The daemon's own entry point, as deploy/ starts it.
const daemonMain = resolve(here, "../daemon-main.js");

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const r1 = (x: number) => Math.round(x * 10) / 10;


interface Bench {
  dataRoot: string;
  pid: number;
  client: ClientConfig;
  nc: NatsConnection;
  stop(): Promise<void>;
}

async function startDaemonProcess(): Promise<Bench> {
  const dataRoot = await mkdtemp(join(tmpdir(), "berth-bench-"));
  const node = `bench${randomBytes(3).toString("hex")}`;
  const child = spawn(process.execPath, [...(process.env.BENCH_DAEMON_NODE_ARGS?.split(" ").filter(Boolean) ?? []), daemonMain, "--data-root", dataRoot, "--node", node, "--nats-port", String(await freePort()), "--http-listen", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, BERTH_LOG_LEVEL: "warn" },
  });
  const end = Date.now() + 60_000;
  while (!existsSync(join(dataRoot, "client.json"))) {
    if (Date.now() > end || child.exitCode !== null) throw new Error("daemon did not come up");
    await new Promise((r) => setTimeout(r, 100));
  }
  const client = JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
  const nc = await connect({ servers: client.nats.servers, user: client.nats.user, pass: client.nats.pass });
  return {
    dataRoot,
    pid: child.pid!,
    client,
    nc,
    async stop() {
      await nc.close();
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await gone;
      await rm(dataRoot, { recursive: true, force: true });
      await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
      removeCgroup(`berth/${node}`);
    },
  };
}

async function cmd(nc: NatsConnection, verb: string, body: unknown): Promise<Record<string, unknown>> {
  const m = await nc.request(`berth.cmd.${verb}`, JSON.stringify(body), { timeout: 60_000 });
  const r = m.json<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }>();
  if (!r.ok) throw new Error(`${verb}: ${r.error?.code}: ${r.error?.message}`);
  return r.result!;
}

/** The same host work done by hand: overlay, conmon → runc create, start, kill, wait, delete. */

async function main(): Promise<void> {
  const N = Number(process.env.BENCH_RUNS ?? 50);
  const CREATES = Number(process.env.BENCH_CREATES ?? 2000);
  const CLIENTS = 8;
  // BENCH_SECTIONS=recovery runs only the log replay (it needs nats-server, not runc or root);
  // BENCH_SECTIONS=crashloop only the crash-loop figures; BENCH_SECTIONS=restart the real restore
  // phase (a daemon process with 200 containers, kill -9, time to /readyz 200; needs runc and root).
  // BENCH_SECTIONS=natssync: create and run+remove under sync_interval always vs 2m, side by side.
  // BENCH_SECTIONS=logs: tail=100 and a full read of a 1 GiB log (time, daemon RSS), follow latency.
  // BENCH_SECTIONS=network: the run cycle on the bridge vs raw + CNI by hand (and none), a pod of
  // 3, BENCH_NET_MANY (200) containers attached and brought back after a host-reboot simulation.
  // BENCH_SECTIONS=exec: container.exec of `true` against raw `runc exec` (BENCH_EXEC_RUNS).
  // BENCH_SECTIONS=cli: `berth ps` and the shell run -d + rm -f cycle against `node -e ''` (and
  // podman when on PATH); BENCH_CLI_RUNS rounds (default 30).
  // BENCH_SECTIONS=upgrade: container.upgrade's downtime against stop + start and stop + rm + run
  // on the same volume (BENCH_UPGRADE_RUNS), and a failed upgrade's way back.
  // BENCH_SECTIONS=checkpoint: container.checkpoint / restore (small, 256 MB touched) against raw
  // runc checkpoint / restore, and the upload against a raw object-store put (BENCH_CHECKPOINT_RUNS).
  // BENCH_SECTIONS=offline: the offline start from local checkpoints (1 and BENCH_OFFLINE_N
  // containers) against a normal start, and the journal's flush rate (BENCH_OFFLINE_FACTS).
  // BENCH_SECTIONS=migrate: container.migrate's downtime between two daemons on a 3-server
  // nats-server cluster (deploy/nats-cluster.sh, loopback), small and 256 MB touched, against raw
  // runc checkpoint → cp -a → conmon restore; pre-copy tried once; run cycle and create throughput
  // on the cluster (replicas 3) against the embedded server (BENCH_MIGRATE_ROUNDS, _RUNS, _CREATES).
  // The runtime section's daemon inherits BERTH_NATS_SYNC.
  const sections = new Set((process.env.BENCH_SECTIONS ?? "runtime,recovery,restart,crashloop,natssync,logs,exec,cli,network,upgrade,checkpoint,migrate,offline").split(","));
  const out: Record<string, unknown> = { at: new Date().toISOString(), node: process.version };
  if (sections.has("runtime")) {
    const d = await startDaemonProcess();
    try {
      // --- raw baseline ---
      const images = JSON.parse(await readFile(join(d.dataRoot, "images", "index.json"), "utf8")) as { images: { name: string; rootfs: string }[] };
      const lower = images.images.find((i) => i.name === "busybox:latest")!.rootfs;
      const work = await mkdtemp(join(tmpdir(), "berth-raw-"));
      await execa("runc", ["spec", "--bundle", work]);
      await execa("mv", [join(work, "config.json"), join(work, "config.template.json")]);
      const raw: number[] = [];
      for (let i = 0; i < N; i++) raw.push(await rawCycle(lower, work, i));
      await rm(work, { recursive: true, force: true });
      removeCgroup("berth-bench");

      // --- run + remove through berth ---
      const cycle = await runCycles(d.nc, N);
      out.runtimeNatsSync = /sync_interval:\s*"([^"]+)"/.exec(readFileSync(join(d.dataRoot, "nats", "nats.conf"), "utf8"))?.[1] ?? "server default (2m)";
      const rawMed = pct(raw, 50);
      const cycMed = pct(cycle, 50);
      out.runCycle = {
        runs: N,
        berthMedianMs: r1(cycMed), berthP99Ms: r1(pct(cycle, 99)),
        rawMedianMs: r1(rawMed), rawP99Ms: r1(pct(raw, 99)),
        ratio: r1((cycMed / rawMed) * 100) / 100, target: "≤ 1.5",
      };

      // --- create throughput from 8 clients ---
      const { perSec, lat, ids } = await createThroughput(d.client, CREATES, CLIENTS);
      out.createThroughput = {
        creates: CREATES, clients: CLIENTS, perSec,
        p50Ms: r1(pct(lat, 50)), p99Ms: r1(pct(lat, 99)), target: "≥ 1000/s, p99 ≤ 50 ms",
      };
      const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${d.pid}/status`, "utf8"))?.[1] ?? 0);
      out.daemonRss = { containers: CREATES, rssMB: r1(rssKb / 1024), target: "≤ 150 MB" };
      for (const id of ids) await cmd(d.nc, "container.remove", { id });
    } finally {
      await d.stop();
    }
  }
  if (sections.has("recovery") || sections.has("restore")) out.recovery = await benchRecovery();
  if (sections.has("restart")) out.restart = await benchRestart();
  if (sections.has("crashloop")) out.crashloop = await benchCrashloop();
  if (sections.has("natssync")) out.natsSyncCost = await benchNatsSync();
  if (sections.has("logs")) out.logs = await benchLogs();
  if (sections.has("exec")) out.exec = await benchExec();
  if (sections.has("cli")) out.cli = await benchCli();
  if (sections.has("network")) out.network = await benchNetwork();
  if (sections.has("upgrade")) out.upgrade = await benchUpgrade();
  if (sections.has("checkpoint")) out.checkpoint = await benchCheckpoint();
  if (sections.has("offline")) out.offline = await benchOffline();
  if (sections.has("migrate")) {
    out.migrate = await benchMigrate();
    for (const line of migrateLines(out.migrate as Record<string, unknown>)) console.log(line);
  }
  console.log(JSON.stringify(out, null, 2));
  const dir = resolve(here, "../../bench-results");
  await mkdir(dir, { recursive: true });
  const file = join(dir, `bench-${new Date().toISOString().replaceAll(":", "-")}.json`);
  await writeFile(file, JSON.stringify(out, null, 2) + "\n");
  console.log(`written to ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
