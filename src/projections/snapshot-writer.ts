// Writes the read model's snapshot in the background: after every `everyEvents` applied events,
// or every `everyMs` when anything changed, and a last one on a graceful stop. Never two at once;
// event application never waits for it (the copy is taken synchronously at one sequence, the
// encoding and the KV writes run after). A failed write is logged and tried again later: a
// snapshot only saves replay time, the log stays the truth.
import type { EventStore } from "../events/store.js";
import { logger, type Logger } from "../log.js";
import type { ReadModel } from "./read-model.js";
import { streamRef, takeSnapshot, type SnapshotSaved, type SnapshotStore, type StreamRef } from "./snapshot.js";

export interface SnapshotWriterOptions {
  snapshots: SnapshotStore;
  node: string;
  /** The projector (or anything that applies events to a model and says so). */
  projector: { readonly model: ReadModel; onEvent(l: () => void): void };
  /** The log, to stamp snapshots with the stream they fold. */
  events: EventStore;
  /** Sequence already covered by a snapshot (the one loaded at start), 0 for none. */
  fromSeq?: number;
  everyEvents?: number;
  everyMs?: number;
  /** Pause after a failed write before the next try. */
  retryMs?: number;
  log?: Logger;
}

export class SnapshotWriter {
  /** Sequence of the last snapshot written (or loaded). */
  lastSeq: number;
  written = 0;
  failures = 0;
  lastSaved: SnapshotSaved | null = null;
  private inflight: Promise<SnapshotSaved | null> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private started = false;
  private retryAt = 0;
  private stream: StreamRef | null = null;
  private readonly everyEvents: number;
  private readonly everyMs: number;
  private readonly retryMs: number;
  private readonly log: Logger;

  constructor(private readonly o: SnapshotWriterOptions) {
    this.lastSeq = o.fromSeq ?? 0;
    this.everyEvents = o.everyEvents ?? 1000;
    this.everyMs = o.everyMs ?? 30_000;
    this.retryMs = o.retryMs ?? Math.min(this.everyMs, 5_000);
    this.log = o.log ?? logger("snapshot", { node: o.node });
  }

  /** Begin watching applied events and the clock. A model far ahead of `fromSeq` is written at once. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.o.projector.onEvent(() => this.onApplied());
    this.timer = setInterval(() => {
      if (this.o.projector.model.seq > this.lastSeq) this.kick();
    }, this.everyMs);
    this.timer.unref();
    this.onApplied();
  }

  /** Write now (after the one in flight, if any). Resolves to what was written, or null. */
  async writeNow(): Promise<SnapshotSaved | null> {
    while (this.inflight) await this.inflight;
    return this.run();
  }

  /** Stop; with `final`, write a last snapshot of whatever changed since the previous one. */
  async stop(opts: { final?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (this.inflight) await this.inflight;
    if (opts.final && this.o.projector.model.seq > this.lastSeq) await this.run();
  }

  private onApplied(): void {
    if (this.o.projector.model.seq - this.lastSeq >= this.everyEvents) this.kick();
  }

  private kick(): void {
    if (this.stopped || this.inflight || Date.now() < this.retryAt) return;
    void this.run();
  }

  private run(): Promise<SnapshotSaved | null> {
    const p = this.write().finally(() => {
      this.inflight = null;
      // Events applied meanwhile may already call for the next one.
      if (!this.stopped) this.onApplied();
    });
    this.inflight = p;
    return p;
  }

  private async write(): Promise<SnapshotSaved | null> {
    try {
      this.stream ??= await streamRef(this.o.events);
      // Taken in one synchronous step: the model at exactly one sequence.
      const doc = takeSnapshot(this.o.projector.model, this.o.node, this.stream);
      if (doc.seq <= this.lastSeq) return null;
      const saved = await this.o.snapshots.save(doc);
      this.lastSeq = saved.seq;
      this.lastSaved = saved;
      this.written++;
      this.retryAt = 0;
      this.log.debug({ ...saved, encodeMs: Math.round(saved.encodeMs), writeMs: Math.round(saved.writeMs) }, "snapshot written");
      return saved;
    } catch (err) {
      this.failures++;
      this.retryAt = Date.now() + this.retryMs;
      this.log.warn({ err, seq: this.o.projector.model.seq }, "snapshot write failed; the next one will try again");
      return null;
    }
  }
}
