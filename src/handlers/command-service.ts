// The generic command service (load → decide → append with the expected version → read back)
// and the envelope and id rules every appended event follows.
import { createHash, randomUUID } from "node:crypto";
import pRetry from "p-retry";
import type { EventStore } from "../events/store.js";
import { fault } from "../fault.js";
import { EVENT_VERSION, OUTCOMES, SUBJECT_ROOT, type BerthEvent, type Meta, type StoredEvent } from "../events/types.js";
import { BerthError, ErrorCode, VersionConflict } from "../shared/errors.js";
import { logger } from "../log.js";
import type { Projector } from "../projections/projector.js";
import type { AnyEvent, AggregateState, AggregateCommands, CommandCtx, Decider, NewEventOf } from "../aggregates/decider.js";

export type Ctx = CommandCtx;

/**
 * What the command door knows of a request with a requestId: whether an earlier attempt began
 * (a retry after a crash, a timeout or a lost reply), the aggregate it acted on, and a way to
 * note that aggregate before acting (so that a retry acts on the same one).
 */
export interface RequestJournal {
  retry: boolean;
  id?: string;
  noteId(id: string): Promise<void>;
}

export function ctxFromMeta(node: string, meta: Meta | undefined, defaultActor: string): Ctx {
  return {
    node,
    actor: meta?.actor ?? defaultActor,
    correlationId: meta?.correlationId ?? meta?.requestId ?? randomUUID(),
    causationId: null,
    requestId: meta?.requestId,
  };
}

/** Stable ids for a request's events: the same request and step give the same id. */
export function eventIdFor(ctx: Ctx, step: string): string {
  if (!ctx.requestId) return randomUUID();
  const h = createHash("sha256").update(`${ctx.requestId}\0${step}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function envelope(ev: { type: string; data: unknown }, ctx: Ctx, eventId: string): BerthEvent {
  return {
    type: ev.type,
    v: EVENT_VERSION,
    eventId,
    at: new Date().toISOString(),
    node: ctx.node,
    actor: ctx.actor,
    correlationId: ctx.correlationId,
    causationId: ctx.causationId,
    data: ev.data,
  } as BerthEvent;
}

/** A request id for a fact berth records itself: the same fact (`what` of `key`) is stored once. */
export function factKey(id: string, what: string, key: string): string {
  return createHash("sha256").update(`${id}\0${what}\0${key}`).digest("hex");
}

const MAX_ATTEMPTS = 8;
const log = logger("commands");

/** The subject of one aggregate's events. */
export const aggregateSubject = (kind: string, id: string) => `${SUBJECT_ROOT}.${kind}.${id}`;

/**
 * The one effectful command handler, for any aggregate: load (the read model) → decide → append
 * with the expected version → wait until the events are read back. Retries only on a version
 * conflict. It knows no aggregate by name: `for(decider)` binds it to one.
 */
export class CommandService {
  constructor(
    private readonly store: EventStore,
    private readonly projector: Projector,
  ) {}

  for<S extends AggregateState, C, E extends AnyEvent>(decider: Decider<S, C, E>): AggregateCommands<S, C, E> {
    const load = (id: string) => this.projector.model.state<S>(decider.kind, id) ?? null;
    const appendDecided = (id: string, decide: (s: S | null) => NewEventOf<E>[], ctx: Ctx, step: string) =>
      this.appendDecided(aggregateSubject(decider.kind, id), () => load(id), decide, ctx, step);
    return {
      decider,
      handle: (id, cmd, ctx, step = commandStep(cmd)) => appendDecided(id, (s) => decider.decide(cmd, s), ctx, step),
      appendDecided,
      appendFact: (id, decide, ctx, step, giveUp) => this.appendFact(() => appendDecided(id, decide, ctx, step), { id, step }, giveUp),
    };
  }

  /** Load → decide → append with the expected version; retry on conflict with fresh state. */
  private async appendDecided<S extends AggregateState>(
    subject: string,
    load: () => S | null,
    decide: (s: S | null) => { type: string; data: unknown }[],
    ctx: Ctx,
    step: string,
  ): Promise<StoredEvent[]> {
    for (let attempt = 1; ; attempt++) {
      const state = load();
      const events = decide(state);
      let expected = state ? state.version : 0;
      const out: StoredEvent[] = [];
      try {
        for (const [i, ev] of events.entries()) {
          const full = envelope(ev, ctx, eventIdFor(ctx, `${step}#${i}`));
          const seq = await this.store.append(subject, full, { expectedSeq: expected });
          expected = seq;
          out.push({ ...full, seq, subject });
          if ((OUTCOMES as Record<string, unknown>)[ev.type]) fault("after-intent");
        }
      } catch (err) {
        if (err instanceof VersionConflict && attempt < MAX_ATTEMPTS) {
          // Someone else wrote first: catch up with the log, then decide again.
          await this.projector.waitForSeq(await this.store.lastSeq());
          continue;
        }
        throw err;
      }
      if (out.length) await this.projector.waitForSeq(out[out.length - 1].seq);
      return out;
    }
  }

  /**
   * For facts that must reach the log (exits, outcomes, policy decisions): while the event store
   * is unreachable, keep trying with backoff until `giveUp()` says stop. The caller's stable
   * request id makes a retry of an append that did land a no-op.
   */
  private appendFact(append: () => Promise<StoredEvent[]>, what: { id: string; step: string }, giveUp: () => boolean): Promise<StoredEvent[]> {
    return pRetry(append, {
      retries: Number.POSITIVE_INFINITY,
      minTimeout: 100,
      maxTimeout: 2_000,
      randomize: false,
      shouldRetry: ({ error }) => {
        if (!(error instanceof BerthError && error.code === ErrorCode.Unavailable) || giveUp()) return false;
        log.warn({ aggregate: what.id, step: what.step, err: error.message }, "event store unreachable; will retry");
        return true;
      },
    });
  }
}

/** A command's step name (for stable event ids): its `type` when it has one. */
function commandStep(cmd: unknown): string {
  const t = (cmd as { type?: unknown } | null)?.type;
  return typeof t === "string" ? t : "command";
}
