// The offline start (issue 11, stories 2 and 3): the log could not be reached for
// --offline-after seconds, so the containers this node keeps a local checkpoint of are started
// from their copies (checkpointer.ts decides which), every fact of the offline span is journaled
// on disk (runtime/journal.ts, fsynced, with its real time), a small HTTP server answers /readyz
// `offline` and lists them, and when the log is back the journal is appended once — each fact
// with a stable event id, skipped when its id is in the container's history already, so a flush
// cut short by a crash adds nothing twice — between NodeOffline and NodeOnline. Then the normal
// start goes on: recovery finds these processes running as the log now says.
import { randomUUID } from "node:crypto";
import Fastify, { type FastifyInstance } from "fastify";
import type { ContainerState } from "../aggregates/container/state.js";
import { nextState, type LifecycleState } from "../aggregates/container/transitions.js";
import { toContainerView } from "../projections/views.js";
import type { EventStore } from "../events/store.js";
import { containerSubject, nodeSubject, type BerthEvent, type ContainerEvent } from "../events/types.js";
import { envelope } from "../handlers/command-service.js";
import { decideCheckpoint, DEFAULT_GRACE_MS, type ParentState } from "../handlers/checkpointer.js";
import { BACKOFF_DEFAULTS, decideRestart } from "../handlers/restart-policy.js";
import type { HealthHost, HostOps, NetPlan } from "../handlers/ports.js";
import { healthConfig, inStartPeriod, nextHealth, probeOutput, unhealthyAction, type HealthStatus } from "../handlers/health.js";
import { DEFAULT_SHARE } from "../aggregates/pod/index.js";
import type { PodNamespace } from "../shared/spec.js";
import type { Logger } from "../log.js";
import type { ReadModel } from "../projections/read-model.js";
import { Journal, type JournalRecord } from "../runtime/journal.js";
import { LocalCheckpoints, type LocalCopy, type Retiring } from "../runtime/local-checkpoints.js";
import type { ExitInfo } from "../shared/host-facts.js";
import { fault } from "../fault.js";
import { networkMode } from "../shared/spec.js";

/** How many containers an offline start starts at once. */
const START_CONCURRENCY = 4;
/** How many containers' journaled facts a flush appends side by side. */
const FLUSH_LANES = 8;

interface HealthWatch {
  /** The run it watches (its startedAt). */
  run: string;
  streak: number;
  status: HealthStatus;
  /** onFailure applied in this run. */
  acted: boolean;
  timer: NodeJS.Timeout | null;
  abort: AbortController;
}

export interface OfflineDeps {
  node: string;
  host: HostOps;
  /** Where the copies are, and the journal. */
  copiesDir: string;
  journalFile: string;
  /** The pid of a container's process when it runs on this host now, else null. */
  livePid(id: string): Promise<number | null>;
  watchExits(cb: (id: string, exit: ExitInfo) => void): () => void;
  /** The health probes' exec, and runc's state. */
  health: HealthHost;
  log: Logger;
}

/** A container as a copy knows it: enough for the host to start it, and for a view. */
function stateOf(copy: LocalCopy, node: string): ContainerState {
  return {
    id: copy.id, name: copy.name, image: copy.image, imageDigest: copy.imageDigest, state: "created", node,
    pid: null, exitCode: null, oomKilled: false, restartCount: 0, health: "none", createdAt: copy.createdAt ?? copy.writtenAt,
    startedAt: null, finishedAt: null, labels: copy.spec.labels ?? {}, annotations: copy.spec.annotations ?? {},
    restartPolicy: copy.spec.restartPolicy ?? { name: "no" }, version: copy.logSeq, spec: { ...copy.spec, node },
    pending: null, stoppedByUser: false, lastError: null, restartAttempt: 0, restartDueAt: null, removed: false,
    ip: copy.ip, revision: copy.revision, lastRevision: copy.revision, previous: null, upgrade: null, checkpointed: null,
  };
}

/** The network a copy's start asks for: its own bridge sandbox, or its pod's (made by the first member started). */
export function netPlanOf(copy: LocalCopy): NetPlan {
  const pod = copy.pod && typeof copy.pod === "object" ? copy.pod : null;
  if (!pod) return networkMode(copy.spec) === "bridge" ? { kind: "bridge", ip: copy.spec.network?.ip ?? copy.ip, exclude: new Set() } : { kind: "plain" };
  const share = (pod.spec.share ?? DEFAULT_SHARE).filter((k): k is PodNamespace => (DEFAULT_SHARE as readonly string[]).includes(k));
  const bridge = networkMode(pod.spec) === "bridge" ? { ip: pod.spec.network?.ip ?? pod.ip ?? copy.ip, exclude: new Set<string>(), ports: pod.spec.network?.ports ?? [] } : null;
  return { kind: "pod", pod: pod.id, hostname: pod.name, share, bridge, resources: pod.spec.resources };
}

export class OfflineMode {
  readonly since = new Date().toISOString();
  private readonly running = new Map<string, ContainerState>();
  private stopExits: (() => void) | null = null;
  private http: FastifyInstance | null = null;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** The health checks of what runs (Docker's rhythm: the next probe intervalMs after the last one ended). */
  private readonly health = new Map<string, HealthWatch>();
  /** Containers whose health check's onFailure asked for a restart: their exit starts them again. */
  private readonly restartAsked = new Set<string>();
  /** Each started container's network, as its copy says (a pod member's: its pod's sandbox). */
  private readonly plans = new Map<string, NetPlan>();
  private closed = false;

  private constructor(private readonly d: OfflineDeps, private readonly journal: Journal) {}

  /** Start what the copies say this node runs; journal it. */
  static async start(d: OfflineDeps): Promise<OfflineMode> {
    const journal = await Journal.open(d.journalFile, { log: d.log });
    const m = new OfflineMode(d, journal);
    // The span's first record: its start, kept with the facts (a flush after a crash finds it).
    await journal.append({ id: randomUUID(), subject: nodeSubject(d.node), type: "NodeOffline", data: { since: m.since }, at: m.since });
    const { copies } = await (await LocalCheckpoints.open(d.copiesDir, { log: d.log })).list();
    m.stopExits = d.watchExits((id, exit) => void m.exited(id, exit));
    // A few at a time: each start is a few runc and conmon calls, mostly waiting.
    const startOne = async (copy: LocalCopy): Promise<void> => {
      const pid = await d.livePid(copy.id).catch(() => null);
      const live = pid !== null;
      if (typeof copy.pod !== "string") m.plans.set(copy.id, netPlanOf(copy));
      // Started by an earlier offline start of this span (its daemon killed meanwhile): it runs on.
      if (live) {
        m.running.set(copy.id, { ...stateOf(copy, d.node), state: "running", pid, startedAt: new Date().toISOString() });
        m.watchHealth(copy.id);
      }
      const goneForMs = copy.retiring ? Date.now() - Date.parse(copy.retiring.since) : null;
      const decision = decideCheckpoint({
        parent: copy.retiring ? copy.retiring.reason : "owned", logReachable: false, runningLocally: live,
        copy: "inactive", goneForMs, graceMs: DEFAULT_GRACE_MS,
      });
      if (decision.action !== "start") {
        d.log.info({ container: copy.id, name: copy.name, action: decision.action, reason: decision.reason }, "offline: local checkpoint not started");
        return;
      }
      if (typeof copy.pod === "string") {
        d.log.warn({ container: copy.id, name: copy.name, pod: copy.pod }, "offline: a pod member's copy from before copies kept the pod; not started (it is rewritten once the log is back)");
        return;
      }
      await m.startFromCopy(stateOf(copy, d.node), "offline: started from its local checkpoint");
    };
    // A pod's members one after another in the order they were created (the first makes the
    // sandbox the others join, as `pod start` does); other containers and pods side by side.
    const mine = copies.filter((c) => c.node === d.node);
    const lanes = new Map<string, LocalCopy[]>();
    for (const copy of mine.sort((a, b) => (a.createdAt ?? "").localeCompare(b.createdAt ?? "") || a.id.localeCompare(b.id))) {
      const key = copy.pod && typeof copy.pod === "object" ? `pod:${copy.pod.id}` : copy.id;
      lanes.set(key, [...(lanes.get(key) ?? []), copy]);
    }
    const queue = [...lanes.values()];
    await Promise.all(Array.from({ length: Math.min(START_CONCURRENCY, queue.length) }, async () => {
      for (let lane = queue.shift(); lane; lane = queue.shift()) for (const copy of lane) await startOne(copy);
    }));
    return m;
  }

  /**
   * Start `c` (from its copy, or again by its policy) and journal it; a start that fails leaves
   * nothing of it behind. Null when it runs, else why not.
   */
  private async startFromCopy(c: ContainerState, what: string): Promise<string | null> {
    try {
      const r = await this.d.host.prepareAndStart(c, this.plans.get(c.id) ?? { kind: "plain" });
      this.running.set(c.id, { ...c, state: "running", pid: r.pid, startedAt: r.startedAt, ip: r.ip ?? c.ip, health: c.spec.healthcheck ? "starting" : "none" });
      await this.record(c.id, "ContainerStarted", { pid: r.pid, startedAt: r.startedAt, ...(r.ip ? { ip: r.ip } : {}) });
      this.watchHealth(c.id);
      this.d.log.info({ container: c.id, name: c.name, pid: r.pid, ...(c.restartAttempt ? { attempt: c.restartAttempt } : {}) }, what);
      return null;
    } catch (err) {
      // Never half-configured: what the attempt made goes (a pod's sandbox stays for its other members).
      this.d.log.warn({ container: c.id, name: c.name, err: (err as Error).message }, "offline: could not start it");
      await this.d.host.cleanup(c.id).catch(() => undefined);
      return (err as Error).message;
    }
  }

  /** The containers started from copies, as views (the offline /v1/containers). */
  views() {
    return [...this.running.values()].map((c) => toContainerView(c, false));
  }

  /** `/readyz` answers 503 `{phase: "offline"}`; `/v1/containers` lists what runs from copies, marked offline. */
  async serve(listen: { host: string; port: number }, token: string): Promise<string> {
    const app = Fastify({ logger: false });
    app.get("/healthz", async () => ({ status: "ok" }));
    app.get("/readyz", async (_req, reply) => reply.code(503).send({ phase: "offline" }));
    app.get("/v1/containers", async (req, reply) => {
      if (req.headers.authorization !== `Bearer ${token}`) return reply.code(401).send({ error: { code: "Unauthenticated", message: "a bearer token is needed" } });
      return { offline: true, since: this.since, containers: this.views() };
    });
    app.all("/v1/*", async (_req, reply) => reply.code(503).send({ error: { code: "Unavailable", message: `offline since ${this.since}: the log cannot be reached` } }));
    await app.listen({ host: listen.host, port: listen.port });
    this.http = app;
    const a = app.server.address();
    const port = typeof a === "object" && a ? a.port : listen.port;
    return `http://${listen.host === "0.0.0.0" ? "127.0.0.1" : listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${port}`;
  }

  /** The log is reachable: the daemon's own HTTP server takes the port. */
  async closeHttp(): Promise<void> {
    await this.http?.close();
    this.http = null;
  }

  /** An exit while offline: journaled, then its restart policy (decideRestart, as online) may start it again after the backoff. */
  private async exited(id: string, exit: ExitInfo): Promise<void> {
    const c = this.running.get(id);
    if (!c || c.state !== "running") return;
    // A run long enough resets the backoff, as evolve does online.
    const ranMs = c.startedAt ? Date.parse(exit.exitedAt) - Date.parse(c.startedAt) : 0;
    const attempt = ranMs >= (c.spec.restartPolicy?.backoff?.resetAfterMs ?? BACKOFF_DEFAULTS.resetAfterMs) ? 0 : c.restartAttempt;
    const exited: ContainerState = { ...c, state: "exited", pid: null, exitCode: exit.exitCode, finishedAt: exit.exitedAt, restartAttempt: attempt, health: "none" };
    this.running.set(id, exited);
    this.unwatchHealth(id);
    try {
      await this.record(id, "ContainerExited", { exitCode: exit.exitCode, oomKilled: exit.oomKilled, exitedAt: exit.exitedAt });
      // Its health check's onFailure asked for a restart: it starts again now (the intent's outcome), not by its policy.
      if (this.restartAsked.delete(id)) {
        if (!this.closed) await this.startAgain(exited, "offline: restarted after its health check failed");
        return;
      }
      const d = decideRestart({ policy: c.restartPolicy, exitCode: exit.exitCode, stoppedByUser: false, attempt, autoRemove: false });
      if (!d.restart || this.closed) return;
      await this.record(id, "ContainerRestartScheduled", { attempt: d.attempt, delayMs: d.delayMs });
      this.running.set(id, { ...exited, state: "restarting", restartAttempt: d.attempt });
      const timer = setTimeout(() => void this.restart(id), d.delayMs);
      this.timers.set(id, timer);
    } catch (err) {
      this.d.log.error({ container: id, err }, "offline: could not journal an exit or its restart");
    }
  }

  private async restart(id: string): Promise<void> {
    this.timers.delete(id);
    const c = this.running.get(id);
    if (!c || this.closed) return;
    await this.startAgain({ ...c, restartCount: c.restartCount + 1 }, "offline: restarted by its policy");
  }

  /** A start after an exit (its policy's, or its health check's restart); one that fails is journaled, and it stays exited. */
  private async startAgain(c: ContainerState, what: string): Promise<void> {
    const failed = await this.startFromCopy(c, what);
    if (failed === null) return;
    await this.record(c.id, "ContainerStartFailed", { error: failed.slice(0, 4000) }).catch(() => undefined);
    this.running.set(c.id, { ...c, state: "exited" });
  }

  /**
   * Its health check, while offline as online (health.ts decides): each status change is
   * journaled (ContainerHealthChanged), and becoming unhealthy applies `onFailure` once per run,
   * journaled as the intent the online monitor would ask for (kill, stop, restart), then done
   * here; the exit that follows is journaled as any exit, and its restart policy applies.
   */
  private watchHealth(id: string): void {
    const c = this.running.get(id);
    if (!c?.spec.healthcheck || this.closed) return;
    this.unwatchHealth(id);
    const w: HealthWatch = { run: c.startedAt!, streak: 0, status: "starting", acted: false, timer: null, abort: new AbortController() };
    this.health.set(id, w);
    this.scheduleProbe(id, w);
  }

  private unwatchHealth(id: string): void {
    const w = this.health.get(id);
    if (!w) return;
    if (w.timer) clearTimeout(w.timer);
    w.abort.abort();
    this.health.delete(id);
  }

  private scheduleProbe(id: string, w: HealthWatch): void {
    const hc = this.running.get(id)?.spec.healthcheck;
    if (!hc || this.health.get(id) !== w) return;
    w.timer = setTimeout(() => {
      w.timer = null;
      void this.probe(id, w)
        .catch((err) => this.d.log.warn({ container: id, err }, "offline: health probe failed"))
        .finally(() => this.scheduleProbe(id, w));
    }, healthConfig(hc).intervalMs);
    w.timer.unref();
  }

  private async probe(id: string, w: HealthWatch): Promise<void> {
    const c = this.running.get(id);
    if (!c || c.state !== "running" || !c.spec.healthcheck) return;
    const hc = healthConfig(c.spec.healthcheck);
    const t0 = Date.now();
    const r = await this.d.health.exec(id, hc.argv, { timeoutMs: hc.timeoutMs, signal: w.abort.signal })
      .catch((err: Error) => ({ exitCode: -1, stdout: "", stderr: err.message, truncated: false, timedOut: false }));
    if (this.health.get(id) !== w) return;
    const ok = r.exitCode === 0;
    // A probe that failed because the container is going away says nothing about its health.
    if (!ok && (await this.d.health.state(id).catch(() => null))?.status !== "running") return;
    const next = nextHealth({ status: w.status, failingStreak: w.streak }, { ok }, { retries: hc.retries, inStartPeriod: inStartPeriod(t0, w.run, hc.startPeriodMs) });
    w.streak = next.failingStreak;
    if (next.changed) {
      w.status = next.status;
      const output = probeOutput(r, hc);
      await this.record(id, "ContainerHealthChanged", { status: next.status, failingStreak: next.failingStreak, ...(output ? { output } : {}) });
      this.running.set(id, { ...this.running.get(id)!, health: next.status });
      this.d.log.info({ container: id, name: c.name, status: next.status }, `offline: container is ${next.status}`);
    }
    if (next.status !== "unhealthy" || w.acted || this.closed) return;
    const cmd = unhealthyAction(hc.onFailure, c.spec);
    if (!cmd) return;
    w.acted = true;
    if (cmd.type === "Kill") {
      await this.record(id, "ContainerKillRequested", { signal: cmd.signal });
      await this.d.host.signal(id, cmd.signal);
      await this.record(id, "ContainerSignaled", { signal: cmd.signal });
    } else if (cmd.type === "Stop" || cmd.type === "Restart") {
      if (cmd.type === "Restart") this.restartAsked.add(id);
      await this.record(id, cmd.type === "Stop" ? "ContainerStopRequested" : "ContainerRestartRequested", cmd.type === "Stop" ? { signal: cmd.signal, timeoutSec: cmd.timeoutSec } : { timeoutSec: cmd.timeoutSec });
      await this.d.host.signal(id, cmd.type === "Stop" ? cmd.signal : (c.spec.stopSignal ?? "SIGTERM"));
      if (!(await this.d.host.waitExit(id, cmd.timeoutSec * 1000))) await this.d.host.signal(id, "SIGKILL");
    }
    this.d.log.info({ container: id, name: c.name, action: hc.onFailure }, "offline: unhealthy: onFailure applied");
  }

  private record(id: string, type: string, data: Record<string, unknown>): Promise<void> {
    return this.journal.append({ id: randomUUID(), subject: containerSubject(id), type, data, at: new Date().toISOString() });
  }

  /** The log is reachable: the exits are the daemon's to watch now (flushOfflineJournal follows). */
  async handBack(): Promise<void> {
    // A restart still waiting is the executor's from here (the log says when it is due).
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    for (const id of [...this.health.keys()]) this.unwatchHealth(id);
    this.stopExits?.();
    await this.closeHttp();
    await this.journal.close();
  }
}

type Ctx = { node: string; actor: string; correlationId: string; causationId: null };

/**
 * At every start, once the log is replayed: what an offline span journaled (this start's, or one
 * a killed daemon left) is appended once — NodeOffline (with the containers it started), each
 * fact with its journaled id and time, skipped when that id is in its subject's history already,
 * then NodeOnline — and the journal is cleared. A container the log still had as running (its
 * process gone with the reboot) gets that run's end first. Returns how many facts went in.
 */
export async function flushOfflineJournal(file: string, node: string, store: EventStore, model: ReadModel, log: Logger): Promise<number> {
  const journal = await Journal.open(file, { log });
  try {
    const { records, mark, dropped } = await journal.replay();
    if (dropped.records || dropped.bytes) log.warn({ dropped }, "offline journal: an incomplete record was dropped");
    if (!records.length) return 0;
    const off = records.find((r) => r.type === "NodeOffline");
    const since = String((off?.data as { since?: string } | undefined)?.since ?? records[0].at);
    const ctx: Ctx = { node, actor: `berth/${node}`, correlationId: `offline:${since}`, causationId: null };
    const started = [...new Set(records.filter((r) => r.type === "ContainerStarted").map((r) => r.subject.slice(CONTAINER.length)))];
    const nodeHistory = new Set((await store.readSubject(nodeSubject(node))).map((e) => e.eventId));
    const offId = off?.id ?? `offline:${node}:${since}`;
    if (!nodeHistory.has(offId)) {
      await store.append(nodeSubject(node), { ...envelope({ type: "NodeOffline", data: { since, started } }, ctx, offId), at: since });
    }
    let facts = 0;
    const subjects = new Map<string, SubjectHead>();
    // In order within each subject; subjects side by side (a few at a time).
    const bySubject = new Map<string, JournalRecord[]>();
    for (const r of records) {
      if (r.type === "NodeOffline") continue;
      const lane = bySubject.get(r.subject);
      if (lane) lane.push(r);
      else bySubject.set(r.subject, [r]);
    }
    const lanes = [...bySubject.values()];
    await Promise.all(Array.from({ length: Math.min(FLUSH_LANES, lanes.length) }, async () => {
      for (let lane = lanes.shift(); lane; lane = lanes.shift()) {
        for (const r of lane) {
          if (await flushOne(store, model, r, ctx, log, subjects)) {
            facts += 1;
            fault("offline-flushing");
          }
        }
      }
    }));
    const onId = `${offId}:online`;
    if (!nodeHistory.has(onId)) {
      const at = new Date().toISOString();
      await store.append(nodeSubject(node), envelope({ type: "NodeOnline", data: { since, at, spanMs: Math.max(0, Date.parse(at) - Date.parse(since)), facts } }, ctx, onId));
    }
    await journal.clear(mark);
    log.info({ facts, since }, "offline journal flushed: back to the log");
    return facts;
  } finally {
    await journal.close();
  }
}

const CONTAINER = "berth.ev.container.";

/** A subject's event ids and last sequence, read once per flush and kept current by it. */
interface SubjectHead {
  ids: Set<string>;
  seq: number;
  /** Its state as the log has it, as the flush goes. */
  state: LifecycleState;
}

/** One journaled fact into the log, unless its id is there already (then false). */
async function flushOne(store: EventStore, model: ReadModel, r: JournalRecord, ctx: Ctx, log: Logger, subjects: Map<string, SubjectHead>): Promise<boolean> {
  if (!r.subject.startsWith(CONTAINER)) return false;
  const id = r.subject.slice(CONTAINER.length);
  const c = model.byId(id);
  if (!c || c.removed) {
    log.warn({ container: id, type: r.type }, "offline journal: the log no longer has this container; the fact is not appended");
    return false;
  }
  // Only the owner writes a container's facts: one the log moved to another node meanwhile is not
  // this node's to speak for (the hand-back stops what runs of it here).
  if (c.node !== ctx.node) {
    log.warn({ container: id, type: r.type, owner: c.node }, "offline journal: the log says another node owns this container now; the fact is not appended");
    return false;
  }
  let head = subjects.get(r.subject);
  if (!head) {
    const history = await store.readSubject(r.subject);
    head = { ids: new Set(history.map((e) => e.eventId)), seq: history.at(-1)?.seq ?? 0, state: c.state };
    subjects.set(r.subject, head);
  }
  const type = r.type as ContainerEvent["type"];
  const events: BerthEvent[] = [];
  if (!head.ids.has(r.id)) {
    if (type === "ContainerStarted" && (head.state === "running" || head.state === "paused") && !head.ids.has(`${r.id}:exit`)) {
      // The run the log knows ended with the reboot, before this start.
      events.push(envelope({ type: "ContainerExited", data: { exitCode: -1, oomKilled: false, exitedAt: r.at } }, ctx, `${r.id}:exit`));
    }
    events.push({ ...envelope({ type, data: r.data } as ContainerEvent, ctx, r.id), at: r.at });
  }
  // A fact the log's state no longer allows (a removal asked for meanwhile, say) is left out: it
  // would be quarantined, and what it says is the executor's to settle now.
  let state = head.state;
  for (const e of events) {
    const next = nextState(state, e.type as ContainerEvent["type"]);
    if (!next) {
      log.warn({ container: id, type: e.type, state }, "offline journal: the log's state of this container no longer allows this fact; it is not appended");
      return false;
    }
    state = next === "removed" ? state : next;
  }
  for (const e of events) {
    head.seq = await store.append(r.subject, e, { expectedSeq: head.seq });
    head.ids.add(e.eventId);
  }
  const after = nextState(head.state, type);
  if (after && after !== "removed") head.state = after;
  return events.length > 0;
}

export interface ReconcileDeps {
  node: string;
  copiesDir: string;
  model: ReadModel;
  livePid(id: string): Promise<number | null>;
  /** Stop what runs of a container on this host and clean up after it (no event: it is not this node's to record). */
  discard(id: string): Promise<void>;
  graceMs: number;
  log: Logger;
}

/**
 * At every start, once the log is replayed and any journal flushed (issue 11, story 3): each local
 * copy whose container the log says was removed, or moved to another node, is decided by the
 * checkpointer's table — its process here (started from the copy in an offline span, say) is
 * stopped at once, and the copy is marked retiring (never started offline again) and deleted by
 * the keeper when the grace period is over; what else of it is on this host is cleaned up. The
 * others are the normal management's. Returns the ids whose process it stopped.
 */
export async function reconcileLocalCopies(d: ReconcileDeps): Promise<string[]> {
  const store = await LocalCheckpoints.open(d.copiesDir, { log: d.log });
  const stopped: string[] = [];
  for (const copy of (await store.list()).copies) {
    if (copy.node !== d.node) continue;
    const c = d.model.byId(copy.id);
    const parent: ParentState = !c || c.removed ? "removed" : c.node !== d.node ? "migrated" : "owned";
    // Coming back here by a migration under way: its process here is the saga's, not a leftover.
    if (parent === "owned" || c?.migration?.toNode === d.node) continue;
    const pid = await d.livePid(copy.id).catch(() => null);
    const goneForMs = copy.retiring ? Date.now() - Date.parse(copy.retiring.since) : null;
    const decision = decideCheckpoint({ parent, logReachable: true, runningLocally: pid !== null, copy: "active", goneForMs, graceMs: d.graceMs });
    d.log.info({ container: copy.id, name: copy.name, parent, action: decision.action, reason: decision.reason }, "hand-back: a local checkpoint whose container is no longer this node's");
    // Whatever of it is on this host goes: a process started from the copy, or what a daemon killed
    // before its clean-up left (a migration's source killed right after the move: mounts, dir).
    await d.discard(copy.id);
    if (pid !== null) stopped.push(copy.id);
    if (decision.action === "remove") await store.remove(copy.id);
    else if (!copy.retiring) {
      const retiring: Retiring = { reason: parent, since: new Date().toISOString(), ...(parent === "migrated" ? { toNode: c!.node } : {}) };
      await store.write({ ...copy, retiring });
    }
  }
  return stopped;
}
