// `berth.cmd.<noun>.<verb>` over NATS request/reply: parse, validate against the command's
// schema, run the use case, reply `{ok, result}` or `{ok:false, error:{code,message}}`.
// A repeated `meta.requestId` gets the first reply (kept in a KV bucket, so any daemon sees it).
import { createHash } from "node:crypto";
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import { BerthError, ErrorCode, invalid, toBerthError, unavailable } from "../errors.js";
import { logger } from "../log.js";
import type { ContainerService } from "../handlers/container-service.js";
import type { ImageService } from "../handlers/image-service.js";
import type { ExecService } from "../handlers/exec-service.js";
import {
  CreateBody,
  ExecBody,
  ImageImportBody,
  ImageRemoveBody,
  KillBody,
  RefBody,
  RemoveBody,
  StopBody,
  UpdateBody,
  validator,
} from "./schemas.js";
import type { Metrics } from "./metrics.js";

export const CMD_PREFIX = "berth.cmd";
const QUEUE = "berth-cmd";
/** Below the server's max_payload (1 MiB), so an oversized body is ours to refuse clearly. */
export const MAX_BODY_BYTES = 512 * 1024;

type LogFields = { ref?: string; correlationId?: string; requestId?: string; actor?: string };
type Reply = { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } };
type Handler = (body: unknown) => Promise<unknown>;

export interface NatsServiceDeps {
  nc: NatsConnection;
  containers: ContainerService;
  images: ImageService;
  /** `container.exec`; without it the verb is unknown. */
  exec?: ExecService;
  metrics?: Metrics;
  /** Commands wait (or fail Unavailable) until the restore phase is over. */
  ready: () => boolean;
}

export class NatsCommandService {
  private sub: Subscription | null = null;
  private kv: KV | null = null;
  private readonly inflight = new Map<string, Promise<Reply>>();
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
    const imp = validator(ImageImportBody);
    const irm = validator(ImageRemoveBody);
    const exec = validator(ExecBody);
    const split = <T extends { meta?: unknown; timeoutMs?: number }>(b: T) => {
      const { meta, timeoutMs, ...rest } = b;
      return { rest, o: { meta: meta as never, timeoutMs } };
    };
    this.handlers = {
      "container.create": async (b) => { const { rest, o } = split(create(b)); return c.create(rest, o); },
      "container.run": async (b) => { const { rest, o } = split(create(b)); return c.run(rest, o); },
      "container.start": async (b) => { const { rest, o } = split(ref(b)); return c.start(rest.id, o); },
      "container.stop": async (b) => { const { rest, o } = split(stop(b)); return c.stop(rest.id, rest.timeoutSec, o); },
      "container.kill": async (b) => {
        const { rest, o } = split(kill(b));
        return c.kill(rest.id, rest.signal === undefined ? undefined : String(rest.signal), o);
      },
      "container.restart": async (b) => { const { rest, o } = split(stop(b)); return c.restart(rest.id, rest.timeoutSec, o); },
      "container.pause": async (b) => { const { rest, o } = split(ref(b)); return c.pause(rest.id, o); },
      "container.unpause": async (b) => { const { rest, o } = split(ref(b)); return c.unpause(rest.id, o); },
      "container.update": async (b) => { const { rest, o } = split(update(b)); const { id, ...patch } = rest; return c.update(id, patch, o); },
      "container.remove": async (b) => { const { rest, o } = split(remove(b)); return c.remove(rest.id, rest.force, o); },
      ...(d.exec ? { "container.exec": async (b: unknown) => { const { rest, o } = split(exec(b)); return d.exec!.exec(rest, o.meta); } } : {}),
      "image.import": async (b) => { const { rest, o } = split(imp(b)); return d.images.import(rest.source, rest.name, o); },
      "image.remove": async (b) => { const { rest, o } = split(irm(b)); return d.images.remove(rest.name, o); },
    };
  }

  async start(): Promise<void> {
    const kvm = new Kvm(this.d.nc);
    this.kv = await kvm.create("berth_requests", { ttl: 3_600_000, history: 1 });
    this.sub = this.d.nc.subscribe(`${CMD_PREFIX}.>`, {
      queue: QUEUE,
      callback: (err, msg) => {
        if (err) return this.log.error({ err }, "command subscription error");
        void this.onMessage(msg);
      },
    });
  }

  async stop(): Promise<void> {
    await this.sub?.drain().catch(() => undefined);
    await Promise.allSettled([...this.inflight.values()]);
  }

  private async onMessage(msg: Msg): Promise<void> {
    const t0 = performance.now();
    const verb = msg.subject.slice(CMD_PREFIX.length + 1);
    const seen: LogFields = {};
    const reply = await this.dispatch(verb, msg.data, seen);
    const code = reply.ok ? "ok" : reply.error.code;
    this.d.metrics?.commandLatency.observe({ subject: verb in this.handlers ? verb : "unknown", code }, (performance.now() - t0) / 1000);
    const result = reply.ok ? (reply.result as { id?: string } | null) : null;
    this.log.info({ cmd: verb, code, ms: Math.round(performance.now() - t0), ...seen, container: result?.id ?? seen.ref }, "command");
    if (msg.reply) msg.respond(JSON.stringify(reply));
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
        return await this.once(`${verb}\0${requestId}`, () => this.run(handler, body));
      }
      return await this.run(handler, body);
    } catch (err) {
      return fail(err);
    }
  }

  private async run(handler: Handler, body: unknown): Promise<Reply> {
    try {
      return { ok: true, result: await handler(body) };
    } catch (err) {
      return fail(err);
    }
  }

  /** Apply a request once; a repeat (here or on another daemon) gets the first reply. */
  private async once(key: string, run: () => Promise<Reply>): Promise<Reply> {
    const k = createHash("sha256").update(key).digest("hex");
    const running = this.inflight.get(k);
    if (running) return running;
    const p = (async () => {
      const seen = await this.kv?.get(k).catch(() => null);
      if (seen && seen.operation === "PUT" && seen.length > 0) return seen.json<Reply>();
      const reply = await run();
      // A request that could not reach the log may be retried for real.
      if (reply.ok || reply.error.code !== ErrorCode.Unavailable) {
        await this.kv?.put(k, JSON.stringify(reply)).catch((err) => this.log.warn({ err }, "could not keep the reply"));
      }
      return reply;
    })();
    this.inflight.set(k, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(k);
    }
  }
}

function fail(err: unknown): Reply {
  const e = toBerthError(err);
  if (!(err instanceof BerthError)) logger("api.nats").error({ err }, "internal error");
  return { ok: false, error: e.toJSON() };
}
