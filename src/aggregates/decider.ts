// The aggregate framework's vocabulary (Emmett's Decider): an aggregate is `decide`, `evolve` and
// an empty state, plus the kind that names its subjects (`berth.ev.<kind>.<id>`). Everything here
// is a type: the generic command service (src/handlers/command-service.ts) and the projection
// registry (src/projections/registry.ts) work on any Decider and name none.
import type { Envelope, StoredEvent } from "../events/types.js";

/** Any event of the log (the known ones are the BerthEvent union; an aggregate may bring its own). */
export type AnyEvent = Envelope<string, unknown>;

/** What every aggregate's state carries: its id and the stream sequence of its last event. */
export interface AggregateState {
  readonly id: string;
  /** The expected version of the next append (Nats-Expected-Last-Subject-Sequence). */
  readonly version: number;
}

/** An event before the store gives it an envelope. */
export type NewEventOf<E extends AnyEvent> = { [K in E["type"]]: { type: K; data: Extract<E, { type: K }>["data"] } }[E["type"]];

export interface Decider<S extends AggregateState, C, E extends AnyEvent> {
  /** The subject token: this aggregate's events live on `berth.ev.<kind>.<id>`. */
  readonly kind: string;
  /** Which events are this aggregate's (the union's discriminants). */
  owns(type: string): type is E["type"];
  /** Pure: the events a command leads to from this state, or a BerthError. Time and ids come in the command. */
  decide(cmd: C, state: S | null): NewEventOf<E>[];
  /** Pure: the state after one event (null: the aggregate does not exist). */
  evolve(state: S | null, event: E & { seq: number; subject: string }): S | null;
  /**
   * Why the aggregate's transition table does not let `event` follow `state`, or null when it
   * does. The writers check it before appending; an event it refuses is quarantined, not folded.
   */
  refuses(state: S | null, event: E): string | null;
  /** A state that has left the read model (removed): the registry forgets it. */
  gone(state: S): boolean;
}

/** The effectful side of one aggregate, as handlers see it (implemented by the command service). */
export interface AggregateCommands<S extends AggregateState, C, E extends AnyEvent> {
  readonly decider: Decider<S, C, E>;
  /** decide(cmd) on the current state → append with the expected version → wait until read back. */
  handle(id: string, cmd: C, ctx: CommandCtx, step?: string): Promise<StoredEvent[]>;
  /** The same with a decision of the caller's own (outcomes, policy decisions). */
  appendDecided(id: string, decide: (s: S | null) => NewEventOf<E>[], ctx: CommandCtx, step: string): Promise<StoredEvent[]>;
  /** appendDecided for facts that must reach the log: retried while the store is away, until `giveUp()`. */
  appendFact(id: string, decide: (s: S | null) => NewEventOf<E>[], ctx: CommandCtx, step: string, giveUp: () => boolean): Promise<StoredEvent[]>;
}

/** Who asks, why, and for which request: becomes the events' envelope. */
export interface CommandCtx {
  node: string;
  actor: string;
  correlationId: string;
  causationId: string | null;
  /** When set, event ids derive from it, so a retried command is stored once (Nats-Msg-Id). */
  requestId?: string;
}
