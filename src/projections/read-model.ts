// The read model: containers, images and nodes folded from the log. Changes only through
// apply(event); queries never touch the host.
import type { ImageImportedData, StoredEvent } from "../events/types.js";
import { isRejected, type RejectedEvent } from "../events/validate.js";
import type { AggregateState, Decider } from "../aggregates/decider.js";
import { podDecider, type PodState } from "../aggregates/pod/index.js";
import { nameDecider, type NameState } from "../aggregates/name/index.js";
import { checkpointDecider, isPodCheckpoint, type CheckpointState, type ContainerCheckpointState, type PodCheckpointState } from "../aggregates/checkpoint/index.js";
import { containerDecider } from "../aggregates/container/index.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { AggregateProjection, parseSubject } from "./registry.js";
import { invalid, notFound } from "../shared/errors.js";

export interface ImageView extends ImageImportedData {
  node: string;
  importedAt: string;
}

export interface NodeView {
  name: string;
  httpUrl: string;
  version: string;
  startedAt: string;
  lastSeenSeq: number;
}

/** An event of the log the model did not fold, and why (listed for auditors). */
export interface QuarantinedEvent {
  seq: number;
  subject: string;
  type: string | null;
  reason: string;
  /** "invalid": failed validation (validate.ts); "transition": the aggregate's table forbids it from the state it met. */
  kind: "invalid" | "transition";
}

/** Quarantined events the model lists (the latest); `quarantinedTotal` counts them all. */
export const QUARANTINE_LIST_MAX = 1000;

/** The read model as plain data: what a snapshot holds (the name index is rebuilt on load). */
export interface ReadModelData {
  seq: number;
  anomalies: number;
  quarantinedTotal: number;
  quarantined: QuarantinedEvent[];
  containers: ContainerState[];
  images: ImageView[];
  nodes: NodeView[];
  /** The states of every other registered aggregate, by kind. */
  aggregates?: Record<string, AggregateState[]>;
}

export class ReadModel {
  /** Aggregates by kind (their subjects' `berth.ev.<kind>.`): every one is folded in the same pass. */
  private readonly aggregates = new Map<string, AggregateProjection<AggregateState>>();
  private readonly containerStates = this.register(containerDecider);
  /** Every container not yet removed, by id. */
  readonly containers: Map<string, ContainerState> = this.containerStates.states;
  /** Every pod not yet removed, by id. */
  readonly pods: Map<string, PodState> = this.register(podDecider).states;
  readonly checkpoints: Map<string, CheckpointState> = this.register(checkpointDecider).states;
  /** Names held cluster-wide (the writers' agreement; queries use byName), by name key. */
  readonly names: Map<string, NameState> = this.register(nameDecider).states;
  private readonly byName = new Map<string, string>();
  /** Images by node, then by name. */
  readonly images = new Map<string, Map<string, ImageView>>();
  readonly nodes = new Map<string, NodeView>();
  /** Last stream sequence applied. */
  seq = 0;
  /** Events an aggregate's transition table forbids that were in the log anyway (quarantined; should stay 0). */
  anomalies = 0;
  /** Every event quarantined so far, and the latest QUARANTINE_LIST_MAX of them. */
  quarantinedTotal = 0;
  quarantined: QuarantinedEvent[] = [];
  /** Told of each event as it is quarantined (the projector logs it). Private: not part of the model's data. */
  #onQuarantine: ((q: QuarantinedEvent) => void) | null = null;

  onQuarantine(listener: ((q: QuarantinedEvent) => void) | null): void {
    this.#onQuarantine = listener;
  }

  /** Fold another aggregate's events too (before the first event is applied). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  register<S extends AggregateState>(decider: Decider<S, any, any>): AggregateProjection<S> {
    if (this.aggregates.has(decider.kind)) throw new Error(`aggregate '${decider.kind}' is registered twice`);
    const p = new AggregateProjection<S>(decider);
    this.aggregates.set(decider.kind, p as unknown as AggregateProjection<AggregateState>);
    return p;
  }

  /** One aggregate's current state (undefined: none, or removed). */
  state<S extends AggregateState>(kind: string, id: string): S | undefined {
    return this.aggregates.get(kind)?.states.get(id) as S | undefined;
  }

  /**
   * Fold one event read back from the log, or quarantine it: a rejected message (validate.ts),
   * or an aggregate event its transition table refuses from the state it meets (the writers check
   * the table before appending, so only a foreign writer puts one there). A quarantined event
   * changes nothing but the bookkeeping: the model's seq, and the aggregate's version (the
   * subject's last sequence, which the next append must name).
   */
  apply(e: StoredEvent | RejectedEvent): void {
    if (e.seq <= this.seq) return;
    this.seq = e.seq;
    const at = parseSubject(e.subject);
    const agg = at && this.aggregates.get(at.kind);
    if (isRejected(e)) {
      const touched = at && agg ? agg.touch(at.id, e.seq) : null;
      if (touched && agg === this.containerStates) this.indexName(at!.id, touched as ContainerState, touched as ContainerState);
      return this.quarantine(e.seq, e.subject, e.type, e.reason, "invalid");
    }
    if (at && agg?.decider.owns(e.type)) {
      const f = agg.apply(at.id, e);
      if (agg === this.containerStates) this.indexName(at.id, f.prev as ContainerState | null, f.next as ContainerState | null);
      if (f.refused) {
        this.anomalies++;
        this.quarantine(e.seq, e.subject, e.type, f.refused, "transition");
      }
      return;
    }
    switch (e.type) {
      case "ImageImported": {
        let m = this.images.get(e.node);
        if (!m) this.images.set(e.node, (m = new Map()));
        m.set(e.data.name, { ...e.data, node: e.node, importedAt: e.at });
        return;
      }
      case "ImageRemoved":
        this.images.get(e.node)?.delete(e.data.name);
        return;
      case "NodeStarted":
        this.nodes.set(e.node, {
          name: e.node,
          httpUrl: e.data.httpUrl,
          version: e.data.version,
          startedAt: e.at,
          lastSeenSeq: e.seq,
        });
        return;
    }
  }

  private quarantine(seq: number, subject: string, type: string | null, reason: string, kind: QuarantinedEvent["kind"]): void {
    const q: QuarantinedEvent = { seq, subject, type, reason, kind };
    this.quarantinedTotal++;
    this.quarantined.push(q);
    if (this.quarantined.length > QUARANTINE_LIST_MAX) this.quarantined.shift();
    this.#onQuarantine?.(q);
  }

  /** Container names: a removed container frees its name, a (hand-made) rename moves it. */
  private indexName(id: string, prev: ContainerState | null, next: ContainerState | null): void {
    if (!next) return;
    if (next.removed) {
      this.releaseName(next.name, id);
      return;
    }
    if (prev && prev.name !== next.name) this.releaseName(prev.name, id);
    this.byName.set(next.name, id);
  }

  /**
   * The name index is a function of the containers alone (so a snapshot need not carry it): a
   * name points at the live container of that name whose last event is the latest. Names are
   * unique unless the log says otherwise (two daemons racing on one name).
   */
  private releaseName(name: string, id: string): void {
    if (this.byName.get(name) !== id) return;
    this.byName.delete(name);
    let heir: ContainerState | undefined;
    for (const c of this.containers.values()) {
      if (c.name === name && (!heir || c.version > heir.version)) heir = c;
    }
    if (heir) this.byName.set(name, heir.id);
  }

  /**
   * A consistent copy of the whole model at `seq`, as plain data, for a snapshot. Cheap and
   * synchronous: container states and views are immutable values (evolve returns new ones), so
   * copying the collections is enough; serializing happens later, off the apply path.
   */
  capture(): ReadModelData {
    const images: ImageView[] = [];
    for (const m of this.images.values()) images.push(...m.values());
    return {
      seq: this.seq,
      anomalies: this.anomalies,
      quarantinedTotal: this.quarantinedTotal,
      quarantined: [...this.quarantined],
      containers: this.containerStates.capture(),
      images,
      nodes: [...this.nodes.values()],
      ...(this.aggregates.size > 1 ? { aggregates: this.otherAggregates() } : {}),
    };
  }

  /** Replace everything with `d` (a snapshot's model) and rebuild the name index. */
  load(d: ReadModelData): void {
    this.containerStates.load(d.containers);
    for (const [kind, p] of this.aggregates) if (p !== this.containerStates) p.load(d.aggregates?.[kind] ?? []);
    this.byName.clear();
    this.images.clear();
    this.nodes.clear();
    for (const c of [...d.containers].sort((a, b) => a.version - b.version)) this.byName.set(c.name, c.id);
    for (const img of d.images) {
      let m = this.images.get(img.node);
      if (!m) this.images.set(img.node, (m = new Map()));
      m.set(img.name, img);
    }
    for (const n of d.nodes) this.nodes.set(n.name, n);
    this.seq = d.seq;
    this.anomalies = d.anomalies;
    this.quarantinedTotal = d.quarantinedTotal;
    this.quarantined = [...d.quarantined];
  }

  private otherAggregates(): Record<string, AggregateState[]> {
    const out: Record<string, AggregateState[]> = {};
    for (const [kind, p] of this.aggregates) if (p !== this.containerStates) out[kind] = p.capture();
    return out;
  }

  byId(id: string): ContainerState | undefined {
    return this.containers.get(id);
  }

  idOfName(name: string): string | undefined {
    return this.byName.get(name);
  }

  /**
   * A ref as a client gives it (API.md: full id, unique id prefix of ≥ 4, or name) → the live
   * container's id, or a clear error. `historic`: a full id of a removed container is taken too
   * (its history is still in the log).
   */
  idOf(ref: string, opts: { historic?: boolean } = {}): string {
    if (typeof ref !== "string" || ref.length === 0 || ref.length > 128) throw invalid("id must be a container id, id prefix or name");
    const r = this.resolve(ref);
    if (r.ok) return r.c.id;
    if (r.why === "ambiguous") throw invalid(`container ref '${ref}' is ambiguous: give more of the id`);
    if (opts.historic && /^[0-9a-f]{64}$/.test(ref)) return ref;
    throw notFound(`no container '${ref}'`);
  }

  /** A pod's id from its full id, a unique id prefix (≥ 4) or its name; NotFound or InvalidArgument. */
  podIdOf(ref: string): string {
    if (typeof ref !== "string" || ref.length === 0 || ref.length > 128) throw invalid("id must be a pod id, id prefix or name");
    if (this.pods.has(ref)) return ref;
    const found: string[] = [];
    for (const p of this.pods.values()) {
      if (p.name === ref) return p.id;
      if (ref.length >= 4 && /^[0-9a-f]+$/.test(ref) && p.id.startsWith(ref)) found.push(p.id);
    }
    if (found.length > 1) throw invalid(`pod ref '${ref}' is ambiguous: give more of the id`);
    if (found.length === 1) return found[0];
    throw notFound(`no pod '${ref}'`);
  }

  /** A container's checkpoint that is still kept (not a pod checkpoint's record). */
  containerCheckpoint(id: string): ContainerCheckpointState | undefined {
    const s = this.checkpoints.get(id);
    return s && !s.removed && !isPodCheckpoint(s) ? s : undefined;
  }

  /** A pod checkpoint's record that is still kept. */
  podCheckpoint(id: string): PodCheckpointState | undefined {
    const s = this.checkpoints.get(id);
    return s && !s.removed && isPodCheckpoint(s) ? s : undefined;
  }

  /** The containers whose spec names this pod (by id, as accepted). */
  membersOf(podId: string): ContainerState[] {
    return [...this.containers.values()].filter((c) => c.spec.pod === podId);
  }

  /** Resolve a ref: full id, unique id prefix of ≥ 4 characters, or name. */
  resolve(ref: string): { ok: true; c: ContainerState } | { ok: false; why: "none" | "ambiguous" } {
    const direct = this.containers.get(ref);
    if (direct) return { ok: true, c: direct };
    const named = this.byName.get(ref);
    if (named) return { ok: true, c: this.containers.get(named)! };
    if (ref.length >= 4 && /^[0-9a-f]+$/.test(ref)) {
      let found: ContainerState | undefined;
      for (const [id, c] of this.containers) {
        if (id.startsWith(ref)) {
          if (found) return { ok: false, why: "ambiguous" };
          found = c;
        }
      }
      if (found) return { ok: true, c: found };
    }
    return { ok: false, why: "none" };
  }

  image(node: string, ref: string): ImageView | undefined {
    const m = this.images.get(node);
    if (!m) return undefined;
    const direct = m.get(ref) ?? (ref.includes(":") ? undefined : m.get(`${ref}:latest`));
    if (direct) return direct;
    for (const img of m.values()) if (img.digest === ref) return img;
    return undefined;
  }

  /** Stream counts per state, for /metrics. */
  countByState(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.containers.values()) out[c.state] = (out[c.state] ?? 0) + 1;
    return out;
  }
}
