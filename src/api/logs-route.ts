// GET /v1/containers/{ref}/logs: the container's output as streamed text (docs/API.md). The
// lines come from the runtime's log reader through the daemon's wiring (`LogsSource`); this
// module parses the query and decides when a follow ends: when the read model no longer shows
// the container running (exited, removed), or the client goes away.
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ReadModel } from "../projections/read-model.js";
import { resolveId } from "./event-query.js";
import { parseSince, parseTail } from "./logs-query.js";
import type * as S from "./http-schemas.js";

export interface LogsRequest {
  tail?: number;
  /** µs since the epoch. */
  sinceUs?: number;
  timestamps?: boolean;
  follow?: boolean;
  /** Fires when the container has ended: the follower drains what is left and finishes. */
  ended?: AbortSignal;
}
export type LogsSource = (id: string, q: LogsRequest) => Readable;

const TEXT = "text/plain; charset=utf-8";
/** How often a follow looks at the read model for the container's end. */
const END_POLL_MS = 200;

export function logsRoute(model: ReadModel, logs: LogsSource, track: (stop: () => void) => () => void) {
  return async (req: FastifyRequest, reply: FastifyReply) => {
    const id = resolveId(model, (req.params as S.RefParams).ref, false);
    const q = req.query as S.LogsQuery;
    const tail = parseTail(q.tail);
    const sinceUs = q.since === undefined ? undefined : parseSince(q.since, Date.now() * 1000);
    const timestamps = q.timestamps ?? false;
    const live = () => {
      const s = model.byId(id)?.state;
      return s === "running" || s === "paused";
    };
    // A container that is not running has nothing more to say: what is there, then the end.
    if (!q.follow || !live()) return reply.type(TEXT).send(logs(id, { tail, sinceUs, timestamps }));

    const ended = new AbortController();
    const timer = setInterval(() => {
      if (!live()) ended.abort();
    }, END_POLL_MS);
    const stream = logs(id, { tail, sinceUs, timestamps, follow: true, ended: ended.signal });
    // Headers now: a follower may have nothing to send for a long time.
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": TEXT, "cache-control": "no-store", "x-content-type-options": "nosniff" });
    reply.raw.flushHeaders();
    const untrack = track(() => stream.destroy());
    try {
      await pipeline(stream, reply.raw);
    } catch {
      // The client went away (or the daemon is closing): the reader has stopped and closed its files.
    } finally {
      clearInterval(timer);
      untrack();
    }
  };
}
