// The projection registry's generic part: one map of states per aggregate kind, folded with the
// aggregate's own evolve. It knows no aggregate by name; the read model registers them.
import type { AggregateState, Decider } from "../aggregates/decider.js";
import type { BerthEvent, StoredEvent } from "../events/types.js";
import { SUBJECT_ROOT } from "../events/types.js";

const PREFIX = `${SUBJECT_ROOT}.`;

/** `berth.ev.<kind>.<id>` → {kind, id}; null for a subject of another shape. */
export function parseSubject(subject: string): { kind: string; id: string } | null {
  if (!subject.startsWith(PREFIX)) return null;
  const dot = subject.indexOf(".", PREFIX.length);
  if (dot < 0 || dot === subject.length - 1) return null;
  return { kind: subject.slice(PREFIX.length, dot), id: subject.slice(dot + 1) };
}

export interface Folded<S> {
  prev: S | null;
  next: S | null;
  /** Why the aggregate's transition table refuses this event from the previous state (it was not folded). */
  refused: string | null;
}

/** The live states of one aggregate kind. States are immutable values: evolve returns new ones. */
export class AggregateProjection<S extends AggregateState> {
  readonly states = new Map<string, S>();

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  constructor(readonly decider: Decider<S, any, any>) {}

  apply(id: string, e: StoredEvent): Folded<S> {
    const prev = this.states.get(id) ?? null;
    const refused = this.decider.refuses(prev, e as BerthEvent);
    // Not folded, but it is the subject's last event now: the next append must name its seq.
    if (refused) return { prev, next: this.touch(id, e.seq), refused };
    const next = this.decider.evolve(prev, e as never);
    if (next === null) return { prev, next, refused };
    if (this.decider.gone(next)) this.states.delete(id);
    else this.states.set(id, next);
    return { prev, next, refused };
  }

  /** An event of this aggregate's subject that is not folded (quarantined): only its seq counts. */
  touch(id: string, seq: number): S | null {
    const prev = this.states.get(id);
    if (!prev) return null;
    const next = { ...prev, version: seq };
    this.states.set(id, next);
    return next;
  }

  capture(): S[] {
    return [...this.states.values()];
  }

  load(states: readonly S[]): void {
    this.states.clear();
    for (const s of states) this.states.set(s.id, s);
  }
}
