// The HTTP query API (API.md "Queries: HTTP"): read-only views of the read model and the log.
// Every route's TypeBox schema validates the request, serializes the reply and feeds the
// OpenAPI document, so the three cannot disagree.
import { createHash, timingSafeEqual } from "node:crypto";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import swagger from "@fastify/swagger";
import websocket from "@fastify/websocket";
import type { EventStore } from "../events/store.js";
import { BerthError, ErrorCode, toBerthError } from "../shared/errors.js";
import { logger } from "../log.js";
import type { ReadModel } from "../projections/read-model.js";
import { byCreated, toCheckpointView, toContainerView, toPodView, CheckpointView, ContainerView, PodView } from "../projections/views.js";
import { Type } from "@sinclair/typebox";
import type { Metrics } from "./metrics.js";
import * as S from "./http-schemas.js";
import { logsRoute, type LogsSource } from "./logs-route.js";
import type { ExecService } from "../handlers/exec-service.js";
import { registerExecRoute } from "./exec-ws.js";
import type { AttachService } from "../handlers/attach-service.js";
import type { Readable } from "node:stream";
import type { CheckpointService } from "../handlers/checkpoint-service.js";
import { isPodCheckpoint } from "../aggregates/checkpoint/index.js";
import { registerAttachRoute } from "./attach-ws.js";
import { verifyLog } from "./audit.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { wantsLocalCheckpoint } from "../shared/checkpoint-annotation.js";
import { buildFilter, containerHistory, listEvents, parsePoint, resolveId, stateAt, streamEvents } from "./event-query.js";

export interface HttpOptions {
  model: ReadModel;
  store: EventStore;
  token: string;
  node: string;
  readiness: () => { ready: boolean; phase: string };
  metrics: Metrics;
  /** The container's log as text lines, streamed (the runtime's reader, through the wiring). */
  logs: LogsSource;
  /** Terminal exec sessions (a WebSocket route); without it the route does not exist. */
  exec?: ExecService;
  /** Clients on containers' own terminals (a WebSocket route, with exec's). */
  attach?: AttachService;
  /** Checkpoint archives in and out (export, import): bodies too big for a NATS message. */
  checkpoints?: CheckpointService;
  /** Which nodes' daemons beat (wiring/presence.ts); without it every node is shown up. */
  presence?: (node: string) => { up: boolean; lastSeen: string } | null;
  /** This node's local checkpoints (handlers/local-checkpoints.ts): when a container's copy was written. */
  localCheckpoint?: (id: string) => { writtenAt: string } | null;
}

const DEFAULT_LIMIT = 1000;

const STATUS: Partial<Record<ErrorCode, number>> = {
  InvalidArgument: 400,
  NotFound: 404,
  AlreadyExists: 409,
  Conflict: 409,
  Unavailable: 503,
};

const body = (code: string, message: string) => ({ error: { code, message } });
const digest = (s: string) => createHash("sha256").update(s).digest();

/** The query API, not listening: the daemon calls listen(). */
export function buildHttpServer(opts: HttpOptions): FastifyInstance {
  if (!opts.token) throw new Error("buildHttpServer: an empty token would let anyone in");
  const { model, store, metrics } = opts;
  const tokenDigest = digest(opts.token);
  const log = logger("api.http", { node: opts.node });
  const app = Fastify({
    loggerInstance: log as FastifyBaseLogger,
    // onResponse logs requests at debug instead.
    logController: new LogController({ disableRequestLogging: true }),
    // Reject unknown query parameters instead of silently dropping them; a single `label`
    // still becomes a one-element array.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: "array" } },
  });
  const streams = new Set<() => void>();

  app.addHook("onRequest", async (req, reply) => {
    // The matched route pattern, not the raw URL: no encoding trick can dodge the check.
    if (!req.routeOptions.url?.startsWith("/v1/")) return;
    const h = req.headers.authorization;
    const m = typeof h === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
    if (!m || !timingSafeEqual(digest(m[1]), tokenDigest)) {
      return reply
        .code(401)
        .header("www-authenticate", 'Bearer realm="berth"')
        .send(body("Unauthenticated", m ? "invalid bearer token" : "missing bearer token"));
    }
    // A half-restored read model would answer wrongly: queries wait for recovery.
    const r = opts.readiness();
    if (!r.ready) {
      return reply.code(503).send(body("Unavailable", `the daemon is restoring its state (phase ${r.phase}); try again shortly`));
    }
  });
  app.addHook("onResponse", async (req, reply) => {
    metrics.httpRequests.inc({ route: req.routeOptions.url ?? "unmatched", status: reply.statusCode });
    log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: reply.elapsedTime }, "request");
  });
  // Open event streams would hold server.close() forever.
  app.addHook("preClose", async () => {
    for (const stop of [...streams]) stop();
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      return reply.code(400).send(body(ErrorCode.InvalidArgument, validationMessage(err)));
    }
    if (!(err instanceof BerthError) && err.statusCode && err.statusCode < 500) {
      const code = err.statusCode === 404 ? ErrorCode.NotFound : ErrorCode.InvalidArgument;
      return reply.code(err.statusCode).send(body(code, err.message));
    }
    const e = toBerthError(err);
    const status = STATUS[e.code] ?? 500;
    if (status >= 500) log.error({ err, url: req.url }, "query failed");
    return reply.code(status).send(body(e.code, e.message));
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(body(ErrorCode.NotFound, `no route ${req.method} ${req.url.split("?")[0]}`));
  });

  app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "berth query API", version: "1", description: "Read-only views of a berth node and its event log" },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    },
  });
  // A terminal's start frame is bounded by the command body limit; more is not a terminal's.
  if (opts.exec) app.register(websocket, { options: { maxPayload: 1024 * 1024 } });
  // Routes live in a plugin so that swagger's onRoute hook is in place before they are added.
  app.register(async (api) => {
    const v1 = { security: [{ bearer: [] }] };
    if (opts.exec) registerExecRoute(api, opts.exec, v1);
    if (opts.exec && opts.attach) registerAttachRoute(api, opts.attach, v1);

    api.get("/healthz", { schema: { tags: ["ops"], response: { 200: S.Health } } }, async () => ({ status: "ok" }));
    api.get(
      "/readyz",
      { schema: { tags: ["ops"], response: { 200: S.Phase, 503: S.Phase } } },
      async (_req, reply) => {
        const r = opts.readiness();
        return r.ready ? { phase: "ready" } : reply.code(503).send({ phase: r.phase });
      },
    );
    api.get(
      "/metrics",
      { schema: { tags: ["ops"], response: { 200: S.text("Prometheus text exposition") } } },
      async (_req, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
    api.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());

    api.get(
      "/v1/containers",
      { schema: { ...v1, tags: ["containers"], querystring: S.ListQuery, response: { 200: S.ContainerList, ...S.errors(400) } } },
      async (req) => {
        const q = req.query as S.ListQuery;
        const labels = (q.label ?? []).map((l) => {
          const i = l.indexOf("=");
          return i < 0 ? { k: l, v: undefined } : { k: l.slice(0, i), v: l.slice(i + 1) };
        });
        const containers = [];
        for (const c of model.containers.values()) {
          if (q.state !== undefined ? c.state !== q.state : !q.all && c.state !== "running" && c.state !== "paused") continue;
          if (q.node !== undefined && c.node !== q.node) continue;
          if (!labels.every(({ k, v }) => k in c.labels && (v === undefined || c.labels[k] === v))) continue;
          containers.push(toContainerView(c, false));
        }
        return { containers: containers.sort(byCreated) };
      },
    );
    api.get(
      "/v1/containers/:ref",
      { schema: { ...v1, tags: ["containers"], params: S.RefParams, response: { 200: ContainerView, ...S.errors(400, 404) } } },
      async (req) => {
        const c = model.byId(resolveId(model, (req.params as S.RefParams).ref, false))!;
        return { ...toContainerView(c, true), localCheckpoint: localCheckpointOf(c) };
      },
    );
    // Wanted by its annotation (its own or its pod's); when, only its node's daemon knows.
    const localCheckpointOf = (c: ContainerState) => {
      const pod = c.spec.pod ? model.pods.get(c.spec.pod) : undefined;
      if (!wantsLocalCheckpoint(c.annotations) && !wantsLocalCheckpoint(pod?.spec.annotations)) return null;
      return { node: c.node, writtenAt: c.node === opts.node ? (opts.localCheckpoint?.(c.id)?.writtenAt ?? null) : null };
    };
    const podView = (id: string) => {
      const members = model.membersOf(id).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0));
      return toPodView(model.pods.get(id)!, members);
    };
    api.get(
      "/v1/pods",
      { schema: { ...v1, tags: ["pods"], response: { 200: Type.Object({ pods: Type.Array(PodView) }) } } },
      async () => ({ pods: [...model.pods.keys()].map(podView).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : 0)) }),
    );
    api.get(
      "/v1/checkpoints",
      {
        schema: {
          ...v1, tags: ["checkpoints"],
          querystring: Type.Object({ container: Type.Optional(Type.String({ maxLength: 128 })) }, { additionalProperties: false }),
          response: { 200: Type.Object({ checkpoints: Type.Array(CheckpointView) }) },
        },
      },
      async (req) => {
        const ref = (req.query as { container?: string }).container;
        const of = ref ? resolveId(model, ref, true) : null;
        const list = [...model.checkpoints.values()].filter((c) => !c.removed && (!of || (!isPodCheckpoint(c) && c.container === of)));
        return { checkpoints: list.sort((a, b) => a.version - b.version).map(toCheckpointView) };
      },
    );
    const cps = opts.checkpoints;
    if (cps) {
      api.get(
        "/v1/checkpoints/:ref/archive",
        { schema: { ...v1, tags: ["checkpoints"], params: S.RefParams, response: { ...S.errors(400, 404) } } },
        async (req, reply) => {
          const { checkpointId, data } = await cps.exportArchive((req.params as S.RefParams).ref);
          return reply.type("application/x-tar").header("content-disposition", `attachment; filename="checkpoint-${checkpointId.slice(0, 12)}.tar"`).send(data);
        },
      );
      // The archive is the body, streamed (never parsed, never held in memory).
      api.addContentTypeParser("application/x-tar", (_req, payload, done) => done(null, payload));
      api.post(
        "/v1/checkpoints",
        {
          schema: {
            ...v1, tags: ["checkpoints"],
            response: { 201: Type.Object({ checkpointId: Type.String(), containerName: Type.String() }), ...S.errors(400, 404) },
          },
        },
        async (req, reply) => {
          if (!(req.headers["content-type"] ?? "").startsWith("application/x-tar")) {
            throw new BerthError(ErrorCode.InvalidArgument, "send the archive as application/x-tar");
          }
          return reply.code(201).send(await cps.importArchive(req.body as Readable));
        },
      );
    }
    api.get(
      "/v1/pods/:ref",
      { schema: { ...v1, tags: ["pods"], params: S.RefParams, response: { 200: PodView, ...S.errors(400, 404) } } },
      async (req) => podView(model.podIdOf((req.params as S.RefParams).ref)),
    );
    api.get(
      "/v1/containers/:ref/events",
      { schema: { ...v1, tags: ["containers", "events"], params: S.RefParams, response: { 200: S.EventList, ...S.errors(400, 404) } } },
      async (req) => {
        const id = resolveId(model, (req.params as S.RefParams).ref, true);
        const events = await containerHistory(store, id);
        if (events.length === 0) throw new BerthError(ErrorCode.NotFound, `no container '${id}'`);
        return { events };
      },
    );
    api.get(
      "/v1/containers/:ref/logs",
      {
        schema: {
          ...v1,
          tags: ["containers"],
          params: S.RefParams,
          querystring: S.LogsQuery,
          response: { 200: S.text("the container's output, one line per line, streamed"), ...S.errors(400, 404) },
        },
      },
      logsRoute(model, opts.logs, (stop) => {
        streams.add(stop);
        return () => streams.delete(stop);
      }),
    );
    api.get(
      "/v1/events",
      {
        schema: {
          ...v1,
          tags: ["events"],
          description: "Events of the log in order. With `Accept: text/event-stream`, existing matching events and then live ones as Server-Sent Events (`id: <seq>`, `data: <event json>`).",
          querystring: S.EventsQuery,
          response: { 200: S.EventList, ...S.errors(400, 404) },
        },
      },
      async (req, reply) => eventsRoute(req, reply),
    );
    api.get(
      "/v1/state",
      { schema: { ...v1, tags: ["events"], querystring: S.StateQuery, response: { 200: S.StateView, ...S.errors(400) } } },
      async (req) => stateAt(store, parsePoint("at", (req.query as S.StateQuery).at)),
    );
    api.get(
      "/v1/images",
      { schema: { ...v1, tags: ["images"], response: { 200: S.ImageList, ...S.errors() } } },
      async () => {
        const images = [...model.images.values()].flatMap((m) => [...m.values()]);
        images.sort((a, b) => (a.node === b.node ? a.name.localeCompare(b.name) : a.node.localeCompare(b.node)));
        return { images };
      },
    );
    api.get(
      "/v1/nodes",
      { schema: { ...v1, tags: ["nodes"], response: { 200: S.NodeList, ...S.errors() } } },
      async () => ({
        nodes: [...model.nodes.values()]
          .sort((a, b) => a.name.localeCompare(b.name))
          .map((n) => ({ ...n, ...(opts.presence ? (opts.presence(n.name) ?? { up: false, lastSeen: null }) : { up: true, lastSeen: null }) })),
      }),
    );
    api.get(
      "/v1/audit/verify",
      { schema: { ...v1, tags: ["audit"], querystring: S.AuditQuery, response: { 200: S.AuditReport, ...S.errors(400, 404) } } },
      async (req) => auditRoute(req.query as S.AuditQuery),
    );
    api.get(
      "/v1/audit/quarantine",
      { schema: { ...v1, tags: ["audit"], response: { 200: S.QuarantineList, ...S.errors() } } },
      async () => ({ total: model.quarantinedTotal, events: model.quarantined }),
    );
  });

  async function auditRoute(q: S.AuditQuery) {
    if (q.pod !== undefined) throw new BerthError(ErrorCode.InvalidArgument, "pods do not exist yet: verify a container or the whole log");
    if (q.container === undefined) return verifyLog(store);
    const id = resolveId(model, q.container, true);
    const r = await verifyLog(store, { containerId: id });
    if (r.checked === 0) throw new BerthError(ErrorCode.NotFound, `no container '${q.container}'`);
    return r;
  }

  async function eventsRoute(req: FastifyRequest, reply: FastifyReply) {
    const q = req.query as S.EventsQuery;
    const f = buildFilter(q, model);
    const accept = req.headers.accept ?? "";
    if (!accept.includes("text/event-stream")) return { events: await listEvents(store, f, q.limit ?? DEFAULT_LIMIT) };
    // A reconnecting EventSource resumes after the last event it saw.
    const last = req.headers["last-event-id"];
    if (typeof last === "string" && /^\d{1,15}$/.test(last)) f.fromSeq = Math.max(f.fromSeq, Number(last) + 1);
    reply.hijack();
    await streamEvents(store, f, q.limit ?? Infinity, reply.raw, (stop) => {
      streams.add(stop);
      return () => streams.delete(stop);
    });
  }

  return app;
}

function validationMessage(err: FastifyError): string {
  const where = err.validationContext ?? "request";
  const parts = (err.validation ?? []).map((v) => {
    const path = v.instancePath ? v.instancePath.replace(/^\//, "").replace(/\//g, ".") : "";
    const extra = v.keyword === "additionalProperties" ? ` '${String((v.params as { additionalProperty?: string }).additionalProperty)}'` : "";
    return `${where}${path ? `.${path}` : ""} ${v.message ?? "is invalid"}${extra}`;
  });
  return parts.length ? parts.join("; ") : err.message;
}
