// Recovery end to end (issue 3, "Benchmark"): a real daemon process with 200 real
// containers running (busybox `sleep`, conmon + runc) and 800 exited ones appended as history, in
// a stream of ≥ 100,000 events; the daemon is killed with SIGKILL (its containers and its
// embedded nats-server stay) and started again with the same flags, and the time from spawn to
// the first /readyz 200 is measured: several times with the snapshot the daemon wrote, once
// without one (the bucket deleted while the daemon is down: a full replay). After each start the
// 200 containers must still run with the same pids, and NodeRestored must count all 1,000.
// restore.ts measures the projection part alone on synthetic events; this is the whole start.
// Removes every container it made, stops the daemon and checks that nothing is left behind.
// Knobs: BENCH_RESTART_RUNNING (200), _EXITED (800), _EVENTS (100000), _ROUNDS (5), _CLIENTS (4),
// _POLL_MS (5). Needs root, runc, conmon and nats-server, like the runtime section.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager, type PubAck } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { ClientConfig, Secrets } from "../config.js";
import { encodeEvent } from "../events/codec.js";
import type { ContainerSpec } from "../shared/spec.js";
import { STREAM, containerSubject, nodeSubject, type BerthEvent } from "../events/types.js";
import { envelope } from "../handlers/command-service.js";
import { SNAPSHOT_BUCKET } from "../projections/snapshot.js";
import { DAEMON_INBOX_PREFIX } from "../runtime/nats-roles.js";
import { Paths } from "../runtime/paths.js";
import { freePort, pool } from "./proc.js";

const here = dirname(fileURLToPath(import.meta.url));
// The daemon's own entry point, as deploy/ starts it.
const daemonMain = resolve(here, "../daemon-main.js");

const r1 = (x: number) => Math.round(x * 10) / 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};



interface LogLine {
  /** ms after spawn, from the line's own timestamp (ms resolution). */
  t: number;
  level: number;
  mod?: string;
  msg: string;
  [k: string]: unknown;
}

/** One daemon process: its pid, its info-level log lines (parsed), and how it ended. */
interface Proc {
  child: ChildProcess;
  spawnedAt: number;
  lines: LogLine[];
  exited: Promise<void>;
  stderr(): string;
}

interface Setup {
  dataRoot: string;
  node: string;
  natsPort: number;
  httpPort: number;
}

function spawnDaemon(s: Setup): Proc {
  const spawnedAt = Date.now();
  const child = spawn(
    process.execPath,
    [daemonMain, "--data-root", s.dataRoot, "--node", s.node, "--nats-port", String(s.natsPort), "--http-listen", `127.0.0.1:${s.httpPort}`],
    // info: the daemon logs its phases with their timings. The daemon inherits BERTH_NATS_SYNC.
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, BERTH_LOG_LEVEL: process.env.BENCH_RESTART_LOG_LEVEL ?? "info" } },
  );
  const lines: LogLine[] = [];
  let buf = "";
  child.stdout!.on("data", (b: Buffer) => {
    buf += b.toString();
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const text = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        const o = JSON.parse(text) as { time: string; level: number; msg: string; pid?: number; hostname?: string };
        // Per-command lines of the 200 runs are not phases: keep everything else.
        if (o.msg === "command" || o.msg === "request") continue;
        const { time, pid: _p, hostname: _h, ...rest } = o;
        lines.push({ t: Date.parse(time) - spawnedAt, ...rest });
      } catch {
        /* not a log line */
      }
    }
  });
  let err = "";
  child.stderr!.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return { child, spawnedAt, lines, exited, stderr: () => err };
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;

/**
 * Poll /readyz every `everyMs` from the moment of spawn until it answers 200: the time to ready
 * and each phase the daemon reported, with when it was first seen.
 */
async function pollReady(p: Proc, httpUrl: string, t0: number, everyMs: number, timeoutMs = 120_000): Promise<{ readyMs: number; firstAnswerMs: number | null; phases: { phase: string; firstSeenMs: number }[]; polls: number }> {
  const phases: { phase: string; firstSeenMs: number }[] = [];
  let firstAnswerMs: number | null = null;
  let polls = 0;
  for (;;) {
    const now = performance.now() - t0;
    if (now > timeoutMs) throw new Error(`daemon not ready after ${timeoutMs} ms (phases ${phases.map((x) => x.phase).join(" → ")})`);
    if (!alive(p)) throw new Error(`daemon exited during its start (${p.child.exitCode ?? p.child.signalCode}): ${p.stderr()}`);
    polls++;
    const res = await fetch(`${httpUrl}/readyz`, { signal: AbortSignal.timeout(5_000) }).catch(() => null);
    if (res) {
      const at = performance.now() - t0;
      firstAnswerMs ??= at;
      const body = (await res.json().catch(() => ({}))) as { phase?: string };
      const phase = body.phase ?? `http ${res.status}`;
      if (phases.at(-1)?.phase !== phase) phases.push({ phase, firstSeenMs: r1(at) });
      if (res.status === 200) return { readyMs: at, firstAnswerMs, phases, polls };
    }
    await sleep(everyMs);
  }
}

async function cmd(nc: NatsConnection, verb: string, body: unknown): Promise<Record<string, unknown>> {
  const m = await nc.request(`berth.cmd.${verb}`, JSON.stringify(body), { timeout: 60_000 });
  const r = m.json<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }>();
  if (!r.ok) throw Object.assign(new Error(`${verb}: ${r.error?.code}: ${r.error?.message}`), { code: r.error?.code });
  return r.result!;
}

async function get<T>(client: ClientConfig, route: string): Promise<T> {
  const res = await fetch(`${client.http.url}${route}`, { headers: { authorization: `Bearer ${client.http.token}` } });
  if (!res.ok) throw new Error(`GET ${route}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** One gauge from /metrics (unauthenticated). */
async function gauge(client: ClientConfig, name: string): Promise<number> {
  const text = await (await fetch(`${client.http.url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

/** Remove; a command racing an in-flight intent may get Conflict, so try again. */
async function remove(nc: NatsConnection, id: string, force: boolean): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await cmd(nc, "container.remove", { id, force });
      return;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === "NotFound") return;
      if ((code !== "Conflict" && code !== "Unavailable") || i >= 50) throw err;
      await sleep(100);
    }
  }
}

interface ContainerRow {
  id: string;
  name: string;
  state: string;
  pid: number | null;
}

/** Synthetic history of exited containers: created → started → exited, then filler facts. */
function* history(n: number, fillers: number, node: string, image: string, imageDigest: string, spec: ContainerSpec): Generator<{ subject: string; event: BerthEvent; id: string }> {
  const ctx = (id: string) => ({ node, actor: "bench/restart", correlationId: id, causationId: null });
  const ev = (id: string, type: BerthEvent["type"], data: unknown) => ({ subject: containerSubject(id), id, event: envelope({ type, data } as never, ctx(id), randomUUID()) });
  const ids = Array.from({ length: n }, () => randomBytes(32).toString("hex"));
  const started = Date.now() - 3_600_000;
  for (const [i, id] of ids.entries()) {
    yield ev(id, "ContainerCreated", { id, name: `bench-exited-${i}`, image, imageDigest, node, spec: { ...spec, name: `bench-exited-${i}` } });
  }
  for (const [i, id] of ids.entries()) {
    yield ev(id, "ContainerStarted", { pid: 4_000_000 + i, startedAt: new Date(started + i).toISOString() });
  }
  for (const [i, id] of ids.entries()) {
    yield ev(id, "ContainerExited", { exitCode: i % 7 === 0 ? 137 : 0, oomKilled: false, exitedAt: new Date(started + 60_000 + i).toISOString() });
  }
  // Filler facts, round-robin as a busy node interleaves them: allowed in `exited`, no intent.
  for (let k = 0; k < fillers; k++) yield ev(ids[k % n], "ContainerUpdated", { restartPolicy: { name: "no" } });
}

/** Pipelined publishes with Nats-Msg-Id, up to `window` unacknowledged. */
async function publishAll(nc: NatsConnection, events: Iterable<{ subject: string; event: BerthEvent }>, window = 2_000): Promise<{ n: number; lastSeq: number; perSec: number }> {
  const js = jetstream(nc);
  const t0 = performance.now();
  const inflight = new Set<Promise<PubAck>>();
  let n = 0;
  let lastSeq = 0;
  for (const { subject, event } of events) {
    const p: Promise<PubAck> = js.publish(subject, encodeEvent(event), { msgID: event.eventId, timeout: 30_000 });
    void p.then((a) => (lastSeq = Math.max(lastSeq, a.seq)), () => undefined).finally(() => inflight.delete(p));
    inflight.add(p);
    n++;
    if (inflight.size >= window) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return { n, lastSeq, perSec: Math.round(n / ((performance.now() - t0) / 1000)) };
}

/** The manifest of the node's snapshot: the sequence it covers, or 0 when there is none. */
async function snapshotSeq(nc: NatsConnection, node: string): Promise<number> {
  try {
    const e = await (await new Kvm(nc).open(SNAPSHOT_BUCKET)).get(node);
    return e?.operation === "PUT" ? (e.json() as { seq: number }).seq : 0;
  } catch {
    return 0; // asked again
  }
}

/** A raw ordered-consumer read of the whole stream, JSON-parsing each message: the floor for a replay. */
async function rawRead(nc: NatsConnection): Promise<{ n: number; ms: number }> {
  const jsm = await jetstreamManager(nc, { timeout: 30_000 });
  const last = (await jsm.streams.info(STREAM)).state.last_seq;
  const dec = new TextDecoder();
  const t0 = performance.now();
  const consumer = await jetstream(nc, { timeout: 30_000 }).consumers.get(STREAM, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 1 });
  const msgs = await consumer.consume({ max_messages: 1000 });
  let n = 0;
  for await (const m of msgs) {
    n++;
    JSON.parse(dec.decode(m.data));
    if (m.seq >= last) break;
  }
  msgs.stop();
  const ms = performance.now() - t0;
  await consumer.delete().catch(() => undefined);
  return { n, ms };
}

/** Stop the daemon (SIGTERM), then list whatever of it is still on the host; remove the data root. */
async function stopAndCheck(s: Setup, p: Proc | null): Promise<string[]> {
  if (p && alive(p)) {
    p.child.kill("SIGTERM");
    const t = setTimeout(() => p.child.kill("SIGKILL"), 30_000);
    await p.exited;
    clearTimeout(t);
  }
  const leaks: string[] = [];
  // A daemon killed before it stopped its nats-server leaves it: never leave one behind.
  let natsPid = 0;
  try {
    natsPid = Number(readFileSync(join(s.dataRoot, "nats", "nats-server.pid"), "utf8").trim()) || 0;
  } catch {
    /* none */
  }
  for (const pid of readdirSync("/proc").filter((x) => /^\d+$/.test(x) && Number(x) !== process.pid)) {
    try {
      const cl = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
      if (cl.includes(s.dataRoot)) leaks.push(`process ${pid}: ${cl.trim().slice(0, 160)}`);
    } catch {
      /* gone meanwhile */
    }
  }
  if (natsPid && leaks.some((l) => l.startsWith(`process ${natsPid}:`))) {
    try {
      process.kill(natsPid, "SIGTERM");
      for (let i = 0; i < 100 && existsSync(`/proc/${natsPid}`); i++) await sleep(100);
    } catch {
      /* gone */
    }
  }
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    if (line.includes(s.dataRoot)) leaks.push(`mount: ${line.split(" ")[4]}`);
  }
  // runc makes /berth/<node>/<id> per container and removes <id>; the per-node parent stays
  // behind (empty): remove it, and report any that is not empty. cgroup v1 and v2 layouts.
  const cg = "/sys/fs/cgroup";
  const dirs = [join(cg, "berth", s.node), ...(existsSync(cg) ? readdirSync(cg).map((ctl) => join(cg, ctl, "berth", s.node)) : [])];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    try {
      rmdirSync(dir);
    } catch {
      leaks.push(`cgroup: ${dir}`);
    }
  }
  const sockets = new Paths(s.dataRoot).socketDir;
  if (!leaks.some((l) => l.startsWith("mount") || (l.startsWith("process") && !l.startsWith(`process ${natsPid}:`)))) {
    await rm(s.dataRoot, { recursive: true, force: true });
    await rm(sockets, { recursive: true, force: true });
  }
  if (existsSync(s.dataRoot)) leaks.push(`dir: ${s.dataRoot}`);
  if (existsSync(sockets)) leaks.push(`dir: ${sockets}`);
  return leaks;
}

/** The daemon's own account of a start, from its info log: phase lines with their times. */
function startLog(p: Proc): Record<string, unknown> {
  const pick = (msg: string) => p.lines.find((l) => l.msg === msg);
  const out: Record<string, unknown> = {};
  const nats = p.lines.find((l) => l.mod === "runtime.nats");
  if (nats) out.nats = { atMs: nats.t, msg: nats.msg };
  const noSnap = p.lines.find((l) => /snapshot/.test(l.msg) && /replay/.test(l.msg));
  if (noSnap) out.snapshotNote = { atMs: noSnap.t, msg: noSnap.msg, ...(noSnap.reason ? { reason: noSnap.reason } : {}) };
  const replayed = pick("log replayed");
  if (replayed) out.replayed = { atMs: replayed.t, events: replayed.events, ms: replayed.ms, fromSnapshot: replayed.fromSnapshot, snapshotSeq: replayed.snapshotSeq };
  const ready = pick("berth daemon ready");
  if (ready) {
    const { t, level: _l, mod: _m, msg: _s, node: _n, nats: _u, http: _h, ...rest } = ready;
    out.ready = { atMs: t, ...rest };
  }
  const warns = p.lines.filter((l) => l.level >= 40 && l.t <= ((ready?.t as number | undefined) ?? Infinity));
  if (warns.length) out.warnings = warns.slice(0, 10).map((l) => ({ atMs: l.t, msg: l.msg }));
  return out;
}

export async function benchRestart(): Promise<Record<string, unknown>> {
  const RUNNING = Number(process.env.BENCH_RESTART_RUNNING ?? 200);
  const EXITED = Number(process.env.BENCH_RESTART_EXITED ?? 800);
  const EVENTS = Number(process.env.BENCH_RESTART_EVENTS ?? 100_000);
  const ROUNDS = Number(process.env.BENCH_RESTART_ROUNDS ?? 5);
  const CLIENTS = Number(process.env.BENCH_RESTART_CLIENTS ?? 4);
  const POLL_MS = Number(process.env.BENCH_RESTART_POLL_MS ?? 5);

  const s: Setup = {
    dataRoot: await mkdtemp(join(tmpdir(), "berth-bench-restart-")),
    node: `benchrs${randomBytes(3).toString("hex")}`,
    natsPort: await freePort(),
    httpPort: await freePort(),
  };
  const httpUrl = `http://127.0.0.1:${s.httpPort}`;
  const out: Record<string, unknown> = { node: s.node };
  let p: Proc | null = spawnDaemon(s);
  let nc: NatsConnection | null = null;
  let writer: NatsConnection | null = null;
  let client: ClientConfig | null = null;
  const running: string[] = [];
  const synthetic: string[] = [];
  let failure: unknown = null;
  try {
    const first = await pollReady(p, httpUrl, performance.now(), 50);
    out.firstStartMs = Math.round(first.readyMs);
    client = JSON.parse(await readFile(join(s.dataRoot, "client.json"), "utf8")) as ClientConfig;
    const c = client;
    const natsConn = () => connect({ servers: c.nats.servers, user: c.nats.user, pass: c.nats.pass, maxReconnectAttempts: -1 });
    nc = await natsConn();
    out.natsSync = /sync_interval:\s*"([^"]+)"/.exec(readFileSync(join(s.dataRoot, "nats", "nats.conf"), "utf8"))?.[1] ?? "server default (2m)";

    // --- 200 real containers ---
    const tRun = performance.now();
    const runner = nc;
    await pool(Array.from({ length: RUNNING }, (_, i) => i), CLIENTS, async (i) => {
      const r = await cmd(runner, "container.run", { name: `bench-run-${i}`, image: "busybox:latest", cmd: ["sleep", "100000"] });
      running.push(r.id as string);
    });
    out.runAll = { containers: RUNNING, clients: CLIENTS, secs: r1((performance.now() - tRun) / 1000) };

    // --- synthetic history of 800 exited containers, up to ≥ EVENTS in the stream ---
    const images = await get<{ images: { name: string; digest: string; node: string }[] }>(client, "/v1/images");
    const busybox = images.images.find((i) => i.name === "busybox:latest" && i.node === s.node);
    if (!busybox) throw new Error("busybox:latest is not recorded on this node");
    // The spec exactly as the daemon accepted it for a real `run` (defaults filled in), as a template.
    const created = (await get<{ events: { type: string; data: { spec: ContainerSpec; imageDigest: string } }[] }>(client, `/v1/containers/${running[0]}/events`)).events.find((e) => e.type === "ContainerCreated")!;
    if (created.data.imageDigest !== busybox.digest) throw new Error(`image digest ${created.data.imageDigest} ≠ ${busybox.digest}`);
    const template: ContainerSpec = { ...created.data.spec, restartPolicy: { name: "no" } };
    // The history is written straight to the stream: that takes the daemon's user (secrets.json).
    const secrets = JSON.parse(readFileSync(join(s.dataRoot, "secrets.json"), "utf8")) as Secrets;
    writer = await connect({ servers: c.nats.servers, user: secrets.natsUser, pass: secrets.natsPass, inboxPrefix: DAEMON_INBOX_PREFIX, maxReconnectAttempts: -1 });
    const jsm = await jetstreamManager(writer, { timeout: 30_000 });
    const before = (await jsm.streams.info(STREAM)).state.last_seq;
    const fillers = Math.max(0, EVENTS - before - 3 * EXITED);
    const tApp = performance.now();
    const gen = history(EXITED, fillers, s.node, busybox.name, busybox.digest, template);
    const seen = new Set<string>();
    const published = await publishAll(writer, (function* () {
      for (const x of gen) {
        if (!seen.has(x.id)) (seen.add(x.id), synthetic.push(x.id));
        yield x;
      }
    })());
    const appendSecs = (performance.now() - tApp) / 1000;
    const last = (await jsm.streams.info(STREAM)).state.last_seq;

    // The daemon applies them live, and writes snapshots every 1,000 events (or 30 s).
    const tApply = performance.now();
    while ((await gauge(client, "berth_log_seq")) < last) {
      if (performance.now() - tApply > 300_000) throw new Error("the daemon did not apply the synthetic history");
      await sleep(200);
    }
    const applySecs = (performance.now() - tApply) / 1000;
    const anomalies = await gauge(client, "berth_transition_anomalies");
    if (anomalies !== 0) throw new Error(`berth_transition_anomalies ${anomalies} after the synthetic history`);
    const tSnap = performance.now();
    let snapSeq = await snapshotSeq(writer, s.node);
    while (snapSeq < last) {
      if (performance.now() - tSnap > 60_000) throw new Error(`no snapshot covers seq ${last} (latest ${snapSeq})`);
      await sleep(500);
      snapSeq = await snapshotSeq(writer, s.node);
    }
    const states = (await get<{ containers: ContainerRow[] }>(client, "/v1/containers?all=true")).containers;
    const byState: Record<string, number> = {};
    for (const x of states) byState[x.state] = (byState[x.state] ?? 0) + 1;
    out.history = {
      streamEvents: last,
      containers: states.length,
      byState,
      appendedEvents: published.n,
      appendPipelinedPerSec: published.perSec,
      appendSecs: r1(appendSecs),
      daemonCaughtUpSecsAfterAppend: r1(applySecs),
      snapshotSeq: snapSeq,
      snapshotWaitSecs: r1((performance.now() - tSnap) / 1000),
      transitionAnomalies: anomalies,
    };
    if (last < EVENTS) throw new Error(`the stream holds ${last} events, fewer than ${EVENTS}`);
    const pids = new Map(states.filter((x) => running.includes(x.id)).map((x) => [x.id, x.pid]));
    if (pids.size !== RUNNING || [...pids.values()].some((x) => !x)) throw new Error("not every real container is running with a pid");

    // --- kill -9, start again, time to ready ---
    const restart = async (label: string): Promise<Record<string, unknown>> => {
      const old = p!;
      old.child.kill("SIGKILL");
      await old.exited;
      if (label === "noSnapshot") {
        // The snapshot bucket goes while the daemon is down (the nats-server is still up).
        await jsm.streams.delete(`KV_${SNAPSHOT_BUCKET}`);
      }
      const lastBefore = (await jsm.streams.info(STREAM)).state.last_seq;
      const t0 = performance.now();
      p = spawnDaemon(s);
      const r = await pollReady(p, httpUrl, t0, POLL_MS);
      // Checks: the same 200 processes, nothing restarted, NodeRestored counts every container.
      const rows = (await get<{ containers: ContainerRow[] }>(client!, "/v1/containers")).containers;
      const now = new Map(rows.map((x) => [x.id, x]));
      const samePids = [...pids].filter(([id, pid]) => now.get(id)?.state === "running" && now.get(id)?.pid === pid && existsSync(`/proc/${pid}`)).length;
      const restored = await jsm.streams.getMessage(STREAM, { last_by_subj: nodeSubject(s.node) });
      const nr = restored?.json<BerthEvent>();
      if (nr?.type !== "NodeRestored") throw new Error(`the node's last event is ${nr?.type}, not NodeRestored`);
      if (samePids !== RUNNING) throw new Error(`${label}: ${RUNNING - samePids} of ${RUNNING} containers lost their pid or state`);
      if (nr.data.containers !== RUNNING + EXITED) throw new Error(`${label}: NodeRestored counts ${nr.data.containers}, not ${RUNNING + EXITED}`);
      return {
        round: label,
        readyMs: Math.round(r.readyMs),
        // This machine is shared: the 1-minute load average when the daemon became ready.
        loadAvg1m: r1(loadavg()[0]),
        firstHttpAnswerMs: r.firstAnswerMs === null ? null : Math.round(r.firstAnswerMs),
        phases: r.phases,
        polls: r.polls,
        eventsInStream: lastBefore,
        runningSamePid: samePids,
        nodeRestored: { containers: nr.data.containers, failed: nr.data.failed, orphans: nr.data.orphans.length, durationMs: nr.data.durationMs },
        daemonLog: startLog(p),
      };
    };
    const rounds: Record<string, unknown>[] = [];
    for (let i = 1; i <= ROUNDS; i++) rounds.push(await restart(`snapshot-${i}`));
    const readys = rounds.map((r) => r.readyMs as number);
    // The floor for a full replay: a raw read of the same stream (no daemon running meanwhile).
    p.child.kill("SIGKILL");
    await p.exited;
    const raw = await rawRead(writer);
    p = spawnDaemon(s);
    await pollReady(p, httpUrl, performance.now(), 50);
    const full = await restart("noSnapshot");
    out.restart = {
      withSnapshot: {
        rounds: ROUNDS,
        readyMedianMs: Math.round(median(readys)),
        readyMaxMs: Math.max(...readys),
        readyMinMs: Math.min(...readys),
        target: "≤ 2000 ms from spawn to /readyz 200",
      },
      withoutSnapshot: { readyMs: full.readyMs, events: full.eventsInStream },
      rawOrderedConsumerRead: { events: raw.n, ms: Math.round(raw.ms), perSec: Math.round(raw.n / (raw.ms / 1000)) },
      pollEveryMs: POLL_MS,
      measured: "spawn of `node dist/daemon-main.js …` (after kill -9 of the previous one; containers and embedded nats-server still up) to the first 200 of GET /readyz",
      perRound: [...rounds, full],
    };

    // --- cleanup: every container goes ---
    const tRm = performance.now();
    await pool(running, CLIENTS, (id) => remove(runner, id, true));
    await pool(synthetic, 8, (id) => remove(runner, id, false));
    out.removeAllSecs = r1((performance.now() - tRm) / 1000);
    const left = (await get<{ containers: ContainerRow[] }>(client, "/v1/containers?all=true")).containers;
    if (left.length) throw new Error(`${left.length} containers left after removing them all`);
  } catch (err) {
    failure = err;
    // Leave no container behind: everything the daemon knows goes.
    if (p && !alive(p)) p = spawnDaemon(s);
    if (p && client && nc) {
      const runner = nc;
      await pollReady(p, httpUrl, performance.now(), 50).catch(() => undefined);
      const left = await get<{ containers: ContainerRow[] }>(client, "/v1/containers?all=true").catch(() => ({ containers: [] as ContainerRow[] }));
      await pool(left.containers, CLIENTS, (x) => remove(runner, x.id, true).catch((e) => console.error(`restart bench: remove ${x.id}: ${e}`)));
    }
  }
  await writer?.close().catch(() => undefined);
  await nc?.close().catch(() => undefined);
  const leaks = await stopAndCheck(s, p);
  out.leaks = leaks;
  if (leaks.length) console.error(`restart bench: left behind:\n  ${leaks.join("\n  ")}`);
  if (failure) throw failure;
  return out;
}
