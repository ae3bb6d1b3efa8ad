// Feeds the read model from the stream: one catch-up read, then a live tail. Everyone who needs
// "after my event is applied" (command replies, the executor) waits here, so the daemon's own
// writes reach its state only by being read back from the log.
import type { EventStore } from "../events/store.js";
import type { StoredEvent } from "../events/types.js";
import { isRejected, type RejectedEvent } from "../events/validate.js";
import { BerthError, ErrorCode } from "../shared/errors.js";
import { logger } from "../log.js";
import { ReadModel } from "./read-model.js";
import { misfit, streamRef, type SnapshotDoc } from "./snapshot.js";

type Listener = (e: StoredEvent, model: ReadModel) => void;

export interface StartResult {
  /** Events replayed from the log (after the snapshot, when one was used). */
  events: number;
  durationMs: number;
  fromSnapshot: boolean;
  /** Sequence the snapshot covered, null without one. */
  snapshotSeq: number | null;
}

interface Waiter {
  match: (e: StoredEvent) => boolean;
  resolve: (e: StoredEvent) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class Projector {
  readonly model = new ReadModel();
  private readonly listeners: Listener[] = [];
  private waiters = new Set<Waiter>();
  private seqWaiters: { seq: number; resolve: () => void }[] = [];
  private tailHandle: { stop: () => Promise<void> } | null = null;
  private readonly log = logger("projector");

  constructor(private readonly store: EventStore) {
    // Once per event and daemon: the catch-up and the tail meet each event once (time travel
    // folds models of its own, which do not log).
    this.model.onQuarantine((q) => this.log.warn({ seq: q.seq, subject: q.subject, type: q.type, kind: q.kind, reason: q.reason }, "event quarantined"));
  }

  onEvent(l: Listener): void {
    this.listeners.push(l);
  }

  /**
   * Recovery's catch-up, then a live tail: load the snapshot if one is given and fits
   * the log (same stream, not beyond its end), replay the events after it (or the whole log),
   * then tail. `events` counts the events replayed, not those folded into the snapshot.
   */
  async start(opts: { snapshot?: SnapshotDoc | null } = {}): Promise<StartResult> {
    const t0 = performance.now();
    let snap = opts.snapshot ?? null;
    if (snap && snap.seq > this.model.seq) {
      const why = misfit(snap, await streamRef(this.store));
      if (why) {
        this.log.warn({ seq: snap.seq, reason: why }, "snapshot ignored: full replay");
        snap = null;
      } else {
        this.model.load(snap.model);
      }
    } else {
      snap = null;
    }
    const apply = (e: StoredEvent | RejectedEvent) => this.model.apply(e);
    const n = await this.store.read({ fromSeq: this.model.seq + 1 }, apply, apply);
    this.tailHandle = await this.store.tail(this.model.seq + 1, (e) => this.applyLive(e), (r) => this.applyLive(r));
    return { events: n, durationMs: performance.now() - t0, fromSnapshot: snap !== null, snapshotSeq: snap?.seq ?? null };
  }

  async stop(): Promise<void> {
    await this.tailHandle?.stop();
    this.tailHandle = null;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(new BerthError(ErrorCode.Unavailable, "daemon is shutting down"));
    }
    this.waiters.clear();
  }

  private applyLive(e: StoredEvent | RejectedEvent): void {
    if (e.seq <= this.model.seq) return;
    this.model.apply(e);
    // A quarantined event concerns nobody but the auditor; it still moves the model's seq.
    if (isRejected(e) || this.model.quarantined.at(-1)?.seq === e.seq) return this.releaseSeqWaiters(e.seq);
    for (const l of this.listeners) {
      try {
        l(e, this.model);
      } catch (err) {
        this.log.error({ err, seq: e.seq, type: e.type }, "event listener failed");
      }
    }
    for (const w of this.waiters) {
      if (w.match(e)) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(e);
      }
    }
    this.releaseSeqWaiters(e.seq);
  }

  private releaseSeqWaiters(seq: number): void {
    if (this.seqWaiters.length) {
      const ready = this.seqWaiters.filter((w) => w.seq <= seq);
      this.seqWaiters = this.seqWaiters.filter((w) => w.seq > seq);
      for (const w of ready) w.resolve();
    }
  }

  /**
   * Fold up to the log's last event as of now; true when the model is then past `since` (by
   * default, where it is now). A caller that judged something on the model at `since` passes it:
   * the model may have moved on by itself between that judgement and this call.
   */
  async catchUp(timeoutMs = 5_000, since = this.model.seq): Promise<boolean> {
    const last = await this.store.lastSeq();
    if (last > this.model.seq) await this.waitForSeq(last, timeoutMs);
    return this.model.seq > since;
  }

  /** Whether `check` holds on the model now, or once it has caught up with the log (when it can). */
  async holdsAfterCatchUp(check: () => boolean): Promise<boolean> {
    const since = this.model.seq;
    if (check()) return true;
    return (await this.catchUp(5_000, since).catch(() => false)) && check();
  }

  /** Resolves once the event at `seq` (ours, just appended) is applied. */
  waitForSeq(seq: number, timeoutMs = 10_000): Promise<void> {
    if (this.model.seq >= seq) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const entry = { seq, resolve: () => (clearTimeout(t), resolve()) };
      const t = setTimeout(() => {
        this.seqWaiters = this.seqWaiters.filter((w) => w !== entry);
        reject(new BerthError(ErrorCode.Unavailable, `event ${seq} was not read back in ${timeoutMs} ms`));
      }, timeoutMs);
      this.seqWaiters.push(entry);
    });
  }

  /**
   * Wait for the first applied event that matches. Register before appending the event that
   * causes it, so that a fast outcome is not missed.
   */
  waitFor(match: (e: StoredEvent) => boolean, timeoutMs: number): { promise: Promise<StoredEvent>; cancel: () => void } {
    let w!: Waiter;
    const promise = new Promise<StoredEvent>((resolve, reject) => {
      w = {
        match,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.delete(w);
          reject(new BerthError(ErrorCode.Timeout, `outcome not seen within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.add(w);
    });
    return {
      promise,
      cancel: () => {
        clearTimeout(w.timer);
        this.waiters.delete(w);
      },
    };
  }
}
