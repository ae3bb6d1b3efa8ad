// Reading the log for queries: event filters, time travel, and the live SSE feed. Reads go
// unfiltered or by one literal subject only (DESIGN.md: wildcard filters are 10× slower).
import type { ServerResponse } from "node:http";
import type { EventStore } from "../events/store.js";
import { containerSubject, type StoredEvent } from "../events/types.js";
import { invalid, unavailable } from "../shared/errors.js";
import { ReadModel } from "../projections/read-model.js";
import { byCreated, toContainerView, type ContainerView } from "../projections/views.js";

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** A point of the log: a sequence number or a time (ms since the epoch). */
export type Point = { seq: number } | { time: number };

export function parsePoint(name: string, s: string): Point {
  if (/^\d{1,15}$/.test(s)) return { seq: Number(s) };
  if (RFC3339.test(s)) {
    const t = Date.parse(s.replace(" ", "T"));
    if (!Number.isNaN(t)) return { time: t };
  }
  throw invalid(`${name} must be a sequence number or an RFC 3339 time, not '${s}'`);
}

export interface EventFilter {
  fromSeq: number;
  untilSeq: number;
  sinceTime?: number;
  untilTime?: number;
  types?: Set<string>;
  /** One literal subject (a container's). */
  subject?: string;
}

export function buildFilter(
  q: { since?: string; until?: string; type?: string; container?: string },
  model: ReadModel,
): EventFilter {
  const f: EventFilter = { fromSeq: 1, untilSeq: Number.MAX_SAFE_INTEGER };
  if (q.since !== undefined) {
    const p = parsePoint("since", q.since);
    if ("seq" in p) f.fromSeq = Math.max(1, p.seq);
    else f.sinceTime = p.time;
  }
  if (q.until !== undefined) {
    const p = parsePoint("until", q.until);
    if ("seq" in p) f.untilSeq = p.seq;
    else f.untilTime = p.time;
  }
  if (q.type !== undefined) {
    const types = q.type.split(",").map((t) => t.trim()).filter(Boolean);
    for (const t of types) if (!/^[A-Z][A-Za-z]{0,63}$/.test(t)) throw invalid(`type '${t}' is not an event type name`);
    if (types.length) f.types = new Set(types);
  }
  if (q.container !== undefined) f.subject = containerSubject(resolveId(model, q.container, true));
  return f;
}

/**
 * A container ref to its id. With `historic`, a full id the model no longer holds (a removed
 * container) still names its history in the log.
 */
/** One ref rule for every route: the read model's. */
export function resolveId(model: ReadModel, ref: string, historic: boolean): string {
  return model.idOf(ref, { historic });
}

type Verdict = "take" | "skip" | "stop";

function judge(f: EventFilter, e: StoredEvent): Verdict {
  if (e.seq > f.untilSeq) return "stop";
  // Events of one log are appended in time order, so the first one past `until` ends the read.
  if (f.untilTime !== undefined && Date.parse(e.at) > f.untilTime) return "stop";
  if (f.subject !== undefined && e.subject !== f.subject) return "skip";
  if (f.sinceTime !== undefined && Date.parse(e.at) < f.sinceTime) return "skip";
  if (f.types && !f.types.has(e.type)) return "skip";
  return "take";
}

/**
 * The last sequence a read may ask for. A filtered consumer waits forever for a message that
 * will not come, so a subject read is bounded by that subject's own last message.
 */
async function readEnd(store: EventStore, subject: string | undefined): Promise<number> {
  if (subject === undefined) return store.lastSeq();
  try {
    const last = await store.jsm.streams.getMessage(store.stream, { last_by_subj: subject });
    return last ? last.seq : 0;
  } catch (err) {
    throw unavailable(`event store unavailable: ${(err as Error).message}`, err);
  }
}

export async function listEvents(store: EventStore, f: EventFilter, limit: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  const end = Math.min(f.untilSeq, await readEnd(store, f.subject));
  if (end < f.fromSeq) return out;
  await store.read({ fromSeq: f.fromSeq, toSeq: end, subject: f.subject }, (e) => {
    const v = judge(f, e);
    if (v === "stop") return false;
    if (v === "take") out.push(e);
    return out.length < limit;
  });
  return out;
}

/**
 * The history of one container, in order, as the read model folds it: without the events it
 * quarantines, also those the transition table forbids (a container's fold needs only its own
 * subject, so folding the history alone decides them exactly as the daemon did).
 */
export async function containerHistory(store: EventStore, id: string): Promise<StoredEvent[]> {
  const events = await listEvents(store, { fromSeq: 1, untilSeq: Number.MAX_SAFE_INTEGER, subject: containerSubject(id) }, Infinity);
  const fold = new ReadModel();
  const quarantined = new Set<number>();
  fold.onQuarantine((q) => quarantined.add(q.seq));
  for (const e of events) fold.apply(e);
  return quarantined.size ? events.filter((e) => !quarantined.has(e.seq)) : events;
}

/** Replay the log into a fresh read model up to `at`: the node as it was then. */
export async function stateAt(store: EventStore, at: Point): Promise<{ seq: number; containers: ContainerView[] }> {
  const model = new ReadModel();
  const last = await store.lastSeq();
  const end = "seq" in at ? Math.min(at.seq, last) : last;
  if (end >= 1) {
    // Quarantined messages are folded (skipped) exactly as the daemon's own model does.
    await store.read(
      { toSeq: end },
      (e) => {
        if ("time" in at && Date.parse(e.at) > at.time) return false;
        model.apply(e);
      },
      (r) => model.apply(r),
    );
  }
  const containers = [...model.containers.values()].map((c) => toContainerView(c, false)).sort(byCreated);
  return { seq: model.seq, containers };
}

/**
 * Stream matching events as Server-Sent Events: the existing ones from `f.fromSeq`, then live
 * ones, until `until` or `limit` is reached or the client goes away. Resolves once it ends.
 */
export async function streamEvents(
  store: EventStore,
  f: EventFilter,
  limit: number,
  raw: ServerResponse,
  onEnd: (stop: () => void) => () => void,
): Promise<void> {
  raw.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-accel-buffering": "no",
  });
  raw.write(": berth events\n\n");
  let closed = false;
  let sent = 0;
  let handle: { stop: () => Promise<void> } | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  // A comment line now and then keeps proxies and idle timeouts from cutting a quiet stream.
  const ping = setInterval(() => raw.write(": ping\n\n"), 15_000).unref();
  const finish = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(ping);
    unregister();
    void handle?.stop();
    if (!raw.writableEnded) raw.end();
    resolveDone();
  };
  const unregister = onEnd(finish);
  raw.on("close", finish);
  if (f.untilSeq < f.fromSeq) {
    finish();
    return done;
  }
  try {
    handle = await store.tail(f.fromSeq, (e) => {
      if (closed) return;
      const v = judge(f, e);
      if (v === "stop") return finish();
      if (v === "skip") return;
      raw.write(`id: ${e.seq}\ndata: ${JSON.stringify(e)}\n\n`);
      if (++sent >= limit || e.seq >= f.untilSeq) finish();
    });
  } catch (err) {
    if (!closed) raw.write(`event: error\ndata: ${JSON.stringify({ message: (err as Error).message })}\n\n`);
    finish();
    return done;
  }
  // The client may have left while the consumer was being set up.
  if (closed) void handle.stop();
  return done;
}
