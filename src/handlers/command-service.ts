// The one effectful command handler: load (the read model) → decide → append with the expected
// version → wait until the event is read back. Retries only on a version conflict.
import { createHash, randomUUID } from "node:crypto";
import type { EventStore } from "../events/store.js";
import { fault } from "../fault.js";
import { EVENT_VERSION, OUTCOMES, containerSubject, type BerthEvent, type Meta, type StoredEvent } from "../events/types.js";
import { BerthError, ErrorCode, VersionConflict } from "../shared/errors.js";
import { logger } from "../log.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { decide, type ContainerCommand, type NewEvent } from "../aggregates/container/decider.js";

export interface Ctx {
  node: string;
  actor: string;
  correlationId: string;
  causationId: string | null;
  /** When set, event ids derive from it, so a retried command is stored once (Nats-Msg-Id). */
  requestId?: string;
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

export function envelope(ev: NewEvent | { type: BerthEvent["type"]; data: unknown }, ctx: Ctx, eventId: string): BerthEvent {
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

export class CommandService {
  constructor(
    private readonly store: EventStore,
    private readonly projector: Projector,
  ) {}

  /**
   * Run a container command to its appended (and applied) events. `step` names the command
   * within its request, for stable event ids.
   */
  async handle(id: string, cmd: ContainerCommand, ctx: Ctx, step: string = cmd.type): Promise<StoredEvent[]> {
    return this.appendDecided(id, (s) => decide(cmd, s), ctx, step);
  }

  /** Load → decide → append with the expected version; retry on conflict with fresh state. */
  async appendDecided(
    id: string,
    decider: (s: ContainerState | null) => NewEvent[],
    ctx: Ctx,
    step: string,
  ): Promise<StoredEvent[]> {
    const subject = containerSubject(id);
    for (let attempt = 1; ; attempt++) {
      const state = this.projector.model.byId(id) ?? null;
      const events = decider(state);
      let expected = state ? state.version : 0;
      const out: StoredEvent[] = [];
      try {
        for (const [i, ev] of events.entries()) {
          const full = envelope(ev, ctx, eventIdFor(ctx, `${step}#${i}`));
          const seq = await this.store.append(subject, full, { expectedSeq: expected });
          expected = seq;
          out.push({ ...full, seq, subject });
          if (OUTCOMES[ev.type]) fault("after-intent");
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
   * appendDecided for facts that must reach the log (exits, outcomes, policy decisions): while the
   * event store is unreachable, keep trying with backoff until `giveUp()` says stop. The caller's
   * stable request id makes a retry of an append that did land a no-op.
   */
  async appendFact(
    id: string,
    decider: (s: ContainerState | null) => NewEvent[],
    ctx: Ctx,
    step: string,
    giveUp: () => boolean,
  ): Promise<StoredEvent[]> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
      try {
        return await this.appendDecided(id, decider, ctx, step);
      } catch (err) {
        if (!(err instanceof BerthError && err.code === ErrorCode.Unavailable) || giveUp()) throw err;
        log.warn({ container: id, step, err: err.message }, "event store unreachable; will retry");
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
