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
import { toContainerView } from "../projections/views.js";
import type { EventStore } from "../events/store.js";
import { containerSubject, nodeSubject, type BerthEvent } from "../events/types.js";
import { envelope } from "../handlers/command-service.js";
import { decideCheckpoint, DEFAULT_GRACE_MS } from "../handlers/checkpointer.js";
import type { HostOps } from "../handlers/ports.js";
import type { Logger } from "../log.js";
import type { ReadModel } from "../projections/read-model.js";
import { Journal, type JournalRecord } from "../runtime/journal.js";
import { LocalCheckpoints, type LocalCopy } from "../runtime/local-checkpoints.js";
import type { ExitInfo } from "../shared/host-facts.js";

export interface OfflineDeps {
  node: string;
  host: HostOps;
  /** Where the copies are, and the journal. */
  copiesDir: string;
  journalFile: string;
  /** Whether a container's process runs on this host now. */
  isLive(id: string): Promise<boolean>;
  watchExits(cb: (id: string, exit: ExitInfo) => void): () => void;
  log: Logger;
}

/** A container as a copy knows it: enough for the host to start it, and for a view. */
function stateOf(copy: LocalCopy, node: string): ContainerState {
  return {
    id: copy.id, name: copy.name, image: copy.image, imageDigest: copy.imageDigest, state: "created", node,
    pid: null, exitCode: null, oomKilled: false, restartCount: 0, health: "none", createdAt: copy.writtenAt,
    startedAt: null, finishedAt: null, labels: copy.spec.labels ?? {}, annotations: copy.spec.annotations ?? {},
    restartPolicy: copy.spec.restartPolicy ?? { name: "no" }, version: copy.logSeq, spec: { ...copy.spec, node },
    pending: null, stoppedByUser: false, lastError: null, restartAttempt: 0, restartDueAt: null, removed: false,
    ip: copy.ip, revision: copy.revision, lastRevision: copy.revision, previous: null, upgrade: null, checkpointed: null,
  };
}

export class OfflineMode {
  readonly since = new Date().toISOString();
  private readonly running = new Map<string, ContainerState>();
  private stopExits: (() => void) | null = null;
  private http: FastifyInstance | null = null;

  private constructor(private readonly d: OfflineDeps, private readonly journal: Journal) {}

  /** Start what the copies say this node runs; journal it. */
  static async start(d: OfflineDeps): Promise<OfflineMode> {
    const journal = await Journal.open(d.journalFile, { log: d.log });
    const m = new OfflineMode(d, journal);
    const { copies } = await (await LocalCheckpoints.open(d.copiesDir, { log: d.log })).list();
    m.stopExits = d.watchExits((id, exit) => void m.exited(id, exit));
    for (const copy of copies) {
      if (copy.node !== d.node) continue;
      const live = await d.isLive(copy.id).catch(() => false);
      const goneForMs = copy.retiring ? Date.now() - Date.parse(copy.retiring.since) : null;
      const decision = decideCheckpoint({
        parent: copy.retiring ? copy.retiring.reason : "owned", logReachable: false, runningLocally: live,
        copy: "inactive", goneForMs, graceMs: DEFAULT_GRACE_MS,
      });
      if (decision.action !== "start") {
        d.log.info({ container: copy.id, name: copy.name, action: decision.action, reason: decision.reason }, "offline: local checkpoint not started");
        continue;
      }
      if (copy.pod) {
        d.log.warn({ container: copy.id, name: copy.name, pod: copy.pod }, "offline: pod members are not started from local checkpoints yet");
        continue;
      }
      const c = stateOf(copy, d.node);
      try {
        const r = await d.host.prepareAndStart(c, c.ip || c.spec.network?.mode === "bridge" ? { kind: "bridge", ip: c.ip, exclude: new Set() } : { kind: "plain" });
        m.running.set(c.id, { ...c, state: "running", pid: r.pid, startedAt: r.startedAt, ip: r.ip ?? c.ip });
        await m.record(c.id, "ContainerStarted", { pid: r.pid, startedAt: r.startedAt, ...(r.ip ? { ip: r.ip } : {}) });
        d.log.info({ container: c.id, name: c.name, pid: r.pid }, "offline: started from its local checkpoint");
      } catch (err) {
        // Never half-configured: what the attempt made goes.
        d.log.warn({ container: c.id, name: c.name, err: (err as Error).message }, "offline: could not start from its local checkpoint");
        await d.host.cleanup(c.id).catch(() => undefined);
      }
    }
    return m;
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

  private async exited(id: string, exit: ExitInfo): Promise<void> {
    const c = this.running.get(id);
    if (!c || c.state !== "running") return;
    this.running.set(id, { ...c, state: "exited", pid: null, exitCode: exit.exitCode, finishedAt: exit.exitedAt });
    await this.record(id, "ContainerExited", { exitCode: exit.exitCode, oomKilled: exit.oomKilled, exitedAt: exit.exitedAt }).catch((err) =>
      this.d.log.error({ container: id, err }, "offline: could not journal an exit"),
    );
  }

  private record(id: string, type: string, data: Record<string, unknown>): Promise<void> {
    return this.journal.append({ id: randomUUID(), subject: containerSubject(id), type, data, at: new Date().toISOString() });
  }

  /**
   * The log is back (`store` open, `model` replayed): the journal appended once, between
   * NodeOffline and NodeOnline; the offline server closed. A container the log had running (its
   * process gone with the reboot) gets that run's end first.
   */
  async handBack(store: EventStore, model: ReadModel): Promise<void> {
    this.stopExits?.();
    await this.closeHttp();
    const { records, mark, dropped } = await this.journal.replay();
    if (dropped.records) this.d.log.warn({ dropped }, "offline journal: an incomplete tail was dropped");
    const ctx = { node: this.d.node, actor: `berth/${this.d.node}`, correlationId: `offline:${this.since}`, causationId: null };
    await store.append(nodeSubject(this.d.node), envelope({ type: "NodeOffline", data: { since: this.since, started: [...this.running.keys()] } } as BerthEvent, ctx, `offline:${this.d.node}:${this.since}`));
    let facts = 0;
    for (const r of records) facts += (await this.flush(store, model, r, ctx)) ? 1 : 0;
    const at = new Date().toISOString();
    await store.append(nodeSubject(this.d.node), envelope({ type: "NodeOnline", data: { since: this.since, at, spanMs: Date.parse(at) - Date.parse(this.since), facts } } as BerthEvent, ctx, `online:${this.d.node}:${this.since}`));
    await this.journal.clear(mark);
    await this.journal.close();
    this.d.log.info({ facts, since: this.since }, "offline journal flushed: back to the log");
  }

  /** One journaled fact into the log, unless its id is there already. */
  private async flush(store: EventStore, model: ReadModel, r: JournalRecord, ctx: { node: string; actor: string; correlationId: string; causationId: null }): Promise<boolean> {
    const history = await store.readSubject(r.subject);
    if (history.some((e) => e.eventId === r.id)) return false;
    const id = r.subject.slice("berth.ev.container.".length);
    const c = model.byId(id);
    if (!c || c.removed) {
      this.d.log.warn({ container: id, type: r.type }, "offline journal: the log no longer has this container; the fact is not appended");
      return false;
    }
    const last = history.at(-1)?.seq ?? 0;
    const events: BerthEvent[] = [];
    if (r.type === "ContainerStarted" && (c.state === "running" || c.state === "paused")) {
      // The run the log knows ended with the reboot, before this start.
      events.push(envelope({ type: "ContainerExited", data: { exitCode: -1, oomKilled: false, exitedAt: r.at } } as BerthEvent, ctx, `${r.id}:exit`));
    }
    events.push(envelope({ type: r.type, data: r.data } as BerthEvent, ctx, r.id));
    let expected = last;
    for (const e of events) {
      if (history.some((h) => h.eventId === e.eventId)) continue;
      expected = await store.append(r.subject, { ...e, at: e.eventId === r.id ? r.at : e.at }, { expectedSeq: expected });
    }
    return true;
  }
}
