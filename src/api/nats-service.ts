// `berth.cmd.<noun>.<verb>` over NATS request/reply: parse, validate against the command's
// schema, run the use case, reply `{ok, result}` or `{ok:false, error:{code,message}}`.
// A repeated `meta.requestId` gets the first reply (kept in a KV bucket, so any daemon sees it).
import { createHash } from "node:crypto";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { BerthError, ErrorCode, invalid, toBerthError, unavailable } from "../shared/errors.js";
import { logger } from "../log.js";
import { CMD_PREFIX, FORWARD, type Reply } from "../contract/client.js";
import type { RequestJournal } from "../handlers/command-service.js";
import { countingAppends } from "../events/store.js";

export { CMD_PREFIX };
import type { ContainerService } from "../handlers/container-service.js";
import type { ImageService } from "../handlers/image-service.js";
import type { ExecService } from "../handlers/exec-service.js";
import type { CheckpointService } from "../handlers/checkpoint-service.js";
import type { PodService } from "../handlers/pod-service.js";
import {
  CreateBody,
  ExecBody,
  ImageImportBody,
  ImageRemoveBody,
  KillBody,
  PodCreateBody,
  PodCheckpointBody,
  PodMigrateBody,
  MigrateBody,
  PodRestoreBody,
  RefBody,
  RemoveBody,
  UpgradeBody,
  CheckpointBody,
  RestoreBody,
  CheckpointRemoveBody,
  StopBody,
  UpdateBody,
  validator,
} from "./schemas.js";
import type { Metrics } from "./metrics.js";

const QUEUE = "berth-cmd";
/** Verbs whose target's own node must act (its host), handed to that node's daemon. */
const FORWARDED = new Set(["container.exec", "pod.start", "pod.stop", "pod.kill", "pod.remove", "pod.checkpoint", "pod.restore", "pod.migrate"]);
/** A forwarded command's longest wait: a pod checkpoint of several members. */
const FORWARD_TIMEOUT_MS = 15 * 60_000;
/** Below the server's max_payload (1 MiB), so an oversized body is ours to refuse clearly. */
export const MAX_BODY_BYTES = 512 * 1024;

type LogFields = { ref?: string; correlationId?: string; requestId?: string; actor?: string };
type Handler = (body: unknown, request?: RequestJournal) => Promise<unknown>;

export interface NatsServiceDeps {
  nc: NatsConnection;
  /** Copies of the request journal's bucket (the cluster's replicas). */
  replicas?: number;
  containers: ContainerService;
  images: ImageService;
  /** `container.exec`; without it the verb is unknown. */
  exec?: ExecService;
  /** `pod.*`; without it those verbs are unknown. */
  pods?: PodService;
  /** `container.checkpoint`, `container.restore`, `checkpoint.remove`; without it those verbs are unknown. */
  checkpoints?: CheckpointService;
  metrics?: Metrics;
  /** Commands wait (or fail Unavailable) until recovery is over. */
  ready: () => boolean;
  /**
   * This daemon's node, and the node that must act on a command itself (its host: exec, a pod's
   * namespaces), or null when any daemon may take it (it goes through the log). A command whose
   * owner is another node is handed to that node's daemon (`berth.fwd.<node>.<verb>`).
   */
  node?: string;
  ownerOf?: (verb: string, body: Record<string, unknown>) => string | null;
  /**
   * Forwarded verbs answered by a stream of messages, not one reply (a checkpoint archive sent to
   * another daemon: archive-transfer.ts): handed the request as it came.
   */
  streams?: Record<string, (msg: Msg) => void>;
  /**
   * Bring the read model up to the log's last event; true when it moved. A command is judged on
   * this daemon's model, which may lag the log by a moment (a client just got its reply from
   * another daemon): a refusal (NotFound, Conflict) given before anything was appended is judged
   * once more after catching up, and a target unknown here is looked up again before forwarding.
   * `since` is the model's position (`seq()`) when it was judged: true when it is past that now.
   */
  catchUp?: (since: number) => Promise<boolean>;
  /** The read model's position in the log (the last event folded in). */
  seq?: () => number;
}

/** Refusals that a model lagging the log could give wrongly. */
const STALE_REFUSALS = new Set<string>([ErrorCode.NotFound, ErrorCode.Conflict]);

export class NatsCommandService {
  private sub: Subscription | null = null;
  private fwd: Subscription | null = null;
  private kv: KV | null = null;
  private readonly inflight = new Map<string, { hash: string; p: Promise<Reply> }>();
  private readonly log = logger("api.nats");
  private readonly handlers: Record<string, Handler>;

  constructor(private readonly d: NatsServiceDeps) {
    const c = d.containers;
    const create = validator(CreateBody);
    const ref = validator(RefBody);
    const stop = validator(StopBody);
    const kill = validator(KillBody);
    const update = validator(UpdateBody);
    const remove = validator(RemoveBody);
    const upgrade = validator(UpgradeBody);
    const checkpoint = validator(CheckpointBody);
    const restore = validator(RestoreBody);
    const cprm = validator(CheckpointRemoveBody);
    const k = d.checkpoints;
    const imp = validator(ImageImportBody);
    const irm = validator(ImageRemoveBody);
    const exec = validator(ExecBody);
    const podCreate = validator(PodCreateBody);
    const podCheckpoint = validator(PodCheckpointBody);
    const podMigrate = validator(PodMigrateBody);
    const migrate = validator(MigrateBody);
    const podRestore = validator(PodRestoreBody);
    const p = d.pods;
    // The body's own fields, and the options every use case takes (the request journal comes
    // from `once` when the body has a requestId).
    const split = <T extends { meta?: unknown; timeoutMs?: number }>(b: T, request?: RequestJournal) => {
      const { meta, timeoutMs, ...rest } = b;
      return { rest, o: { meta: meta as never, timeoutMs, request } };
    };
    this.handlers = {
      "container.create": async (b, r) => { const { rest, o } = split(create(b), r); return c.create(rest, o); },
      "container.run": async (b, r) => { const { rest, o } = split(create(b), r); return c.run(rest, o); },
      "container.start": async (b, r) => { const { rest, o } = split(ref(b), r); return c.start(rest.id, o); },
      "container.stop": async (b, r) => { const { rest, o } = split(stop(b), r); return c.stop(rest.id, rest.timeoutSec, o); },
      "container.kill": async (b, r) => {
        const { rest, o } = split(kill(b), r);
        return c.kill(rest.id, rest.signal === undefined ? undefined : String(rest.signal), o);
      },
      "container.restart": async (b, r) => { const { rest, o } = split(stop(b), r); return c.restart(rest.id, rest.timeoutSec, o); },
      "container.pause": async (b, r) => { const { rest, o } = split(ref(b), r); return c.pause(rest.id, o); },
      "container.unpause": async (b, r) => { const { rest, o } = split(ref(b), r); return c.unpause(rest.id, o); },
      "container.update": async (b, r) => { const { rest, o } = split(update(b), r); const { id, ...patch } = rest; return c.update(id, patch, o); },
      "container.remove": async (b, r) => { const { rest, o } = split(remove(b), r); return c.remove(rest.id, rest.force, o); },
      "container.upgrade": async (b, r) => { const { rest, o } = split(upgrade(b), r); const { id, ...req } = rest; return c.upgrade(id, req, o); },
      "container.rollback": async (b, r) => { const { rest, o } = split(ref(b), r); return c.rollback(rest.id, o); },
      ...(d.exec ? { "container.exec": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(exec(b), r); return d.exec!.exec(rest, o.meta, o.request); } } : {}),
      ...(k
        ? {
            "container.checkpoint": async (b: unknown, r?: RequestJournal) => {
              const { rest, o } = split(checkpoint(b), r);
              const { id, ...opts } = rest;
              return c.checkpoint(id, opts, o);
            },
            "container.restore": async (b: unknown, r?: RequestJournal) => {
              const { rest, o } = split(restore(b), r);
              return c.restore({ ...rest, checkpointId: k.resolve(rest.checkpointId) }, o);
            },
            "checkpoint.remove": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(cprm(b), r); return k.remove(rest.checkpointId, o); },
            "container.migrate": async (b: unknown, r?: RequestJournal) => {
              const { rest, o } = split(migrate(b), r);
              const { id, ...req } = rest;
              return c.migrate(id, req, o);
            },
          }
        : {}),
      ...(p
        ? {
            "pod.create": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(podCreate(b), r); return p.create(rest, o); },
            "pod.start": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(ref(b), r); return p.start(rest.id, o); },
            "pod.stop": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(stop(b), r); return p.stop(rest.id, rest.timeoutSec, o); },
            "pod.kill": async (b: unknown, r?: RequestJournal) => {
              const { rest, o } = split(kill(b), r);
              return p.kill(rest.id, rest.signal === undefined ? undefined : String(rest.signal), o);
            },
            "pod.remove": async (b: unknown, r?: RequestJournal) => { const { rest, o } = split(remove(b), r); return p.remove(rest.id, rest.force, o); },
            ...(k
              ? {
                  "pod.checkpoint": async (b: unknown, r?: RequestJournal) => {
                    const { rest, o } = split(podCheckpoint(b), r);
                    const { id, ...opts } = rest;
                    return p.checkpoint(id, opts, o);
                  },
                  "pod.migrate": async (b: unknown, r?: RequestJournal) => {
                    const { rest, o } = split(podMigrate(b), r);
                    return p.migrate(rest.id, rest.targetNode, rest.preCopy ?? false, o);
                  },
                  "pod.restore": async (b: unknown, r?: RequestJournal) => {
                    const { rest, o } = split(podRestore(b), r);
                    return p.restore({ ...rest, checkpointId: k.resolve(rest.checkpointId) }, o);
                  },
                }
              : {}),
          }
        : {}),
      "image.import": async (b, r) => { const { rest, o } = split(imp(b), r); return d.images.import(rest.source, rest.name, o); },
      "image.remove": async (b, r) => { const { rest, o } = split(irm(b), r); return d.images.remove(rest.name, o); },
    };
  }

  async start(): Promise<void> {
    const kvm = new Kvm(this.d.nc);
    this.kv = await kvm.create("berth_requests", { ttl: 3_600_000, history: 1, replicas: this.d.replicas ?? 1 });
    this.sub = this.d.nc.subscribe(`${CMD_PREFIX}.>`, {
      queue: QUEUE,
      callback: (err, msg) => {
        if (err) return this.log.error({ err }, "command subscription error");
        void this.onMessage(msg);
      },
    });
    if (this.d.node) {
      // Commands other daemons hand over: this node's own to act on. Never handed on again.
      const prefix = `${FORWARD}.${this.d.node}.`;
      this.fwd = this.d.nc.subscribe(`${prefix}>`, {
        callback: (err, msg) => {
          if (err) return this.log.error({ err }, "forward subscription error");
          const verb = msg.subject.slice(prefix.length);
          const stream = this.d.streams && Object.hasOwn(this.d.streams, verb) ? this.d.streams[verb] : undefined;
          if (stream) return stream(msg);
          void this.onMessage(msg, verb);
        },
      });
    }
  }

  async stop(): Promise<void> {
    await this.sub?.drain().catch(() => undefined);
    await this.fwd?.drain().catch(() => undefined);
    await Promise.allSettled([...this.inflight.values()].map((r) => r.p));
  }

  private async onMessage(msg: Msg, forwarded?: string): Promise<void> {
    const t0 = performance.now();
    const verb = forwarded ?? msg.subject.slice(CMD_PREFIX.length + 1);
    const seen: LogFields = {};
    const owner = forwarded === undefined ? await this.ownerElsewhere(verb, msg.data) : null;
    if (owner) return this.forward(msg, verb, owner, t0);
    const reply = await this.dispatch(verb, msg.data, seen);
    const code = reply.ok ? "ok" : reply.error.code;
    this.d.metrics?.commandLatency.observe({ subject: verb in this.handlers ? verb : "unknown", code }, (performance.now() - t0) / 1000);
    const result = reply.ok ? (reply.result as { id?: string } | null) : null;
    this.log.info({ cmd: verb, code, ms: Math.round(performance.now() - t0), ...seen, container: result?.id ?? seen.ref }, "command");
    if (msg.reply) msg.respond(JSON.stringify(reply));
  }

  /**
   * The other node that must act on this command itself, or null (this one, or any). A target
   * this daemon does not know yet is looked up again once its model has caught up with the log.
   */
  private async ownerElsewhere(verb: string, data: Uint8Array): Promise<string | null> {
    const ownerOf = this.d.ownerOf;
    if (!ownerOf || !this.d.node || !FORWARDED.has(verb) || data.length > MAX_BODY_BYTES || !this.d.ready()) return null;
    let body: Record<string, unknown>;
    try {
      const parsed = JSON.parse(new TextDecoder().decode(data)) as unknown;
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) return null;
      body = parsed as Record<string, unknown>;
    } catch {
      // The local path answers what is malformed.
      return null;
    }
    const since = this.seq();
    let owner = ownerOf(verb, body);
    if (owner === null && (await this.caughtUp(since))) owner = ownerOf(verb, body);
    return owner && owner !== this.d.node ? owner : null;
  }

  /** Catch the model up with the log; false when it has not moved past `since` (or the log is away). */
  private async caughtUp(since: number): Promise<boolean> {
    try {
      return (await this.d.catchUp?.(since)) ?? false;
    } catch {
      return false;
    }
  }

  private seq(): number {
    return this.d.seq?.() ?? 0;
  }

  /** Hand the command to the owner's daemon and relay its answer (or why there is none). */
  private async forward(msg: Msg, verb: string, owner: string, t0: number): Promise<void> {
    let reply: string;
    try {
      const r = await this.d.nc.request(`${FORWARD}.${owner}.${verb}`, msg.data, { timeout: FORWARD_TIMEOUT_MS, ...(msg.headers ? { headers: msg.headers } : {}) });
      reply = new TextDecoder().decode(r.data);
    } catch (err) {
      const e = err as Error & { code?: string };
      const why = /no responders/i.test(e.message) || e.code === "503"
        ? unavailable(`node ${owner} does not answer (its daemon is down): the command needs its host`)
        : new BerthError(ErrorCode.Timeout, `node ${owner} did not answer within ${FORWARD_TIMEOUT_MS} ms`);
      reply = JSON.stringify(fail(why));
    }
    this.log.info({ cmd: verb, forwardedTo: owner, ms: Math.round(performance.now() - t0) }, "command forwarded");
    if (msg.reply) msg.respond(reply);
  }

  /** Exported for tests: the whole command path but the transport. */
  async dispatch(verb: string, data: Uint8Array, seen: LogFields = {}): Promise<Reply> {
    try {
      const handler = this.handlers[verb];
      if (!handler) throw invalid(`unknown command '${CMD_PREFIX}.${verb}'`);
      if (data.length > MAX_BODY_BYTES) throw invalid(`body of ${data.length} bytes exceeds ${MAX_BODY_BYTES}`);
      let body: unknown;
      try {
        body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
      } catch {
        throw invalid("body is not valid JSON");
      }
      if (!body || typeof body !== "object" || Array.isArray(body)) throw invalid("body must be a JSON object");
      const b = body as { id?: unknown; meta?: { requestId?: unknown; correlationId?: unknown; actor?: unknown } };
      if (typeof b.id === "string") seen.ref = b.id.slice(0, 128);
      if (typeof b.meta?.correlationId === "string") seen.correlationId = b.meta.correlationId.slice(0, 256);
      if (typeof b.meta?.requestId === "string") seen.requestId = b.meta.requestId.slice(0, 256);
      if (typeof b.meta?.actor === "string") seen.actor = b.meta.actor.slice(0, 256);
      if (!this.d.ready()) throw unavailable("the daemon is still restoring its state; try again shortly");
      const requestId = (body as { meta?: { requestId?: unknown } }).meta?.requestId;
      if (typeof requestId === "string" && requestId.length > 0 && requestId.length <= 256) {
        return await this.once(`${verb}\0${requestId}`, body, (request) => this.run(handler, body, request));
      }
      return await this.run(handler, body);
    } catch (err) {
      return fail(err);
    }
  }

  private async run(handler: Handler, body: unknown, request?: RequestJournal): Promise<Reply> {
    // Where the model stood when the handler judged the command (it may move on meanwhile).
    const since = this.seq();
    const first = await countingAppends(() => handler(body, request));
    if ("value" in first) return { ok: true, result: first.value };
    // Refused before it changed anything, perhaps on a model behind the log: judge it again.
    const code = first.error instanceof BerthError ? first.error.code : null;
    if (first.appends > 0 || !code || !STALE_REFUSALS.has(code) || !(await this.caughtUp(since))) return fail(first.error);
    try {
      return { ok: true, result: await handler(body, request) };
    } catch (err) {
      return fail(err);
    }
  }

  /**
   * Apply a request once; a repeat (here or on another daemon) gets the answer the first attempt
   * had, or would have had. The KV entry says `pending` from before the first attempt acts until
   * its answer is final, so a repeat after a crash, a timeout or a lost reply runs the use case
   * again in retry mode (it finds its own events in the log instead of appending new ones). A
   * repeat whose body differs from the first one is refused.
   */
  private async once(key: string, body: unknown, run: (request: RequestJournal) => Promise<Reply>): Promise<Reply> {
    const k = createHash("sha256").update(key).digest("hex");
    const hash = bodyHash(body);
    const running = this.inflight.get(k);
    if (running) return running.hash === hash ? running.p : fail(reused());
    const p = (async (): Promise<Reply> => {
      const seen = await this.kv?.get(k).catch(() => null);
      const entry = seen && seen.operation === "PUT" && seen.length > 0 ? seen.json<Kept | Reply>() : null;
      // Entries written before the pending state existed are plain replies.
      const kept: Kept | null = entry && "ok" in entry ? { state: "done", hash, reply: entry } : entry;
      if (kept && kept.hash !== hash) return fail(reused());
      if (kept?.state === "done" && kept.reply) return kept.reply;
      const keep = (next: Kept) => this.kv?.put(k, JSON.stringify(next)).catch((err) => this.log.warn({ err }, "could not keep the request's state"));
      let noted = kept?.id;
      const journal: RequestJournal = {
        retry: kept !== null,
        id: kept?.id,
        noteId: async (id) => {
          if (noted === id) return;
          noted = id;
          await keep({ state: "pending", hash, id });
        },
      };
      if (!kept) await keep({ state: "pending", hash });
      const reply = await run(journal);
      // Not final: the store was away (nothing may have happened), or the outcome came late.
      if (reply.ok || (reply.error.code !== ErrorCode.Unavailable && reply.error.code !== ErrorCode.Timeout)) {
        await keep({ state: "done", hash, id: noted, reply });
      }
      return reply;
    })();
    this.inflight.set(k, { hash, p });
    try {
      return await p;
    } finally {
      this.inflight.delete(k);
    }
  }
}

/** What the request KV keeps per request id. */
interface Kept {
  state: "pending" | "done";
  /** bodyHash of the first attempt. */
  hash: string;
  /** The aggregate the request acted on, once known (a retry must not act on another of the same name). */
  id?: string;
  reply?: Reply;
}

const reused = () => invalid("this requestId was already used for a different request body");

/** The body as a retry must repeat it: everything but meta and timeoutMs, keys in a stable order. */
function bodyHash(body: unknown): string {
  const { meta: _m, timeoutMs: _t, ...rest } = body as Record<string, unknown>;
  const canon = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(canon) : v && typeof v === "object" ? Object.fromEntries(Object.keys(v).sort().map((key) => [key, canon((v as Record<string, unknown>)[key])])) : v;
  return createHash("sha256").update(JSON.stringify(canon(rest))).digest("hex");
}

function fail(err: unknown): Reply {
  const e = toBerthError(err);
  if (!(err instanceof BerthError)) logger("api.nats").error({ err }, "internal error");
  return { ok: false, error: e.toJSON() };
}
