// The event store on JetStream: append with optimistic concurrency and idempotency, read one
// subject, read everything after a sequence, tail live. Full replays read the stream unfiltered
// and filter only by literal subjects (DESIGN.md: wildcard filters are 10× slower here).
import { AsyncLocalStorage } from "node:async_hooks";
import type { NatsConnection } from "@nats-io/transport-node";
import {
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type ConsumerMessages,
  type StreamInfo,
  StorageType,
  DiscardPolicy,
} from "@nats-io/jetstream";
import { BerthError, ErrorCode, VersionConflict, unavailable } from "../shared/errors.js";
import { SUBJECT_ROOT, STREAM, type BerthEvent, type StoredEvent } from "./types.js";
import { encodeEvent } from "./codec.js";
import { hashOf } from "./chain.js";
import { admit, isRejected, type RejectedEvent } from "./validate.js";

const appendsSeen = new AsyncLocalStorage<{ n: number }>();

/**
 * Run `f` and count the appends it tried (on any store, through any await chain it started):
 * a command that tried none changed nothing and may be judged again.
 */
export async function countingAppends<T>(f: () => Promise<T>): Promise<{ value: T; appends: number } | { error: unknown; appends: number }> {
  const seen = { n: 0 };
  try {
    const value = await appendsSeen.run(seen, f);
    return { value, appends: seen.n };
  } catch (error) {
    return { error, appends: seen.n };
  }
}

/** JetStream API error codes we act on. */
export const JsErr = {
  StreamWrongLastSequence: 10071,
  StreamWrongLastSequenceClustered: 10164,
  NoMessageFound: 10037,
} as const;

/** Subjects whose last appended message the store remembers, to chain the next without a read. */
const HEADS_MAX = 10_000;
/** How long the tail may sit behind an event this store appended before it starts a new consumer. */
const STALL_MS = 3_000;

export interface AppendOptions {
  /** Last sequence of the subject we decided on; 0 = the subject must be empty. */
  expectedSeq?: number;
}

export class EventStore {
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly stream: string,
  ) {}

  static async open(nc: NatsConnection, opts: { stream?: string; duplicateWindowMs?: number; replicas?: number } = {}): Promise<EventStore> {
    const stream = opts.stream ?? STREAM;
    const jsm = await jetstreamManager(nc);
    const config = {
      name: stream,
      subjects: [`${SUBJECT_ROOT}.>`],
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      // Nats-Msg-Id dedup window: a retried publish within it is stored once.
      duplicate_window: (opts.duplicateWindowMs ?? 120_000) * 1_000_000,
      allow_direct: true,
      max_msg_size: 1024 * 1024,
      // The log is append-only: no one, the daemon included, removes a message or empties the
      // stream (the server refuses; it also refuses to lift these flags once set).
      deny_delete: true,
      deny_purge: true,
      // On a JetStream cluster: every event on this many servers (a write is acknowledged by a majority).
      num_replicas: opts.replicas ?? 1,
    };
    let existing: StreamInfo | null = null;
    try {
      existing = await jsm.streams.info(stream);
    } catch {
      try {
        await jsm.streams.add(config);
      } catch (err) {
        // Another daemon created it first.
        if (!(err instanceof JetStreamApiError) || !/already in use|exists/i.test(err.message)) throw err;
      }
    }
    // A stream made by an older daemon: deny delete and purge from now on.
    if (existing && !(existing.config.deny_delete && existing.config.deny_purge)) {
      await jsm.streams.update(stream, { deny_delete: true, deny_purge: true });
    }
    return new EventStore(nc, jetstream(nc), jsm, stream);
  }

  /**
   * Append one event; returns its stream sequence. Throws VersionConflict on a stale version.
   * The store sets the event's `prevHash` (the hash chain, chain.ts), so every writer chains.
   * Without `expectedSeq` the append is still made against the subject's last message, the one
   * it hashed, so that two writers cannot both link to it; it retries when another came first.
   */
  async append(subject: string, event: BerthEvent, opts: AppendOptions = {}): Promise<number> {
    const seen = appendsSeen.getStore();
    if (seen) seen.n++;
    if (opts.expectedSeq !== undefined) return this.appendAt(subject, event, opts.expectedSeq, await this.hashAt(subject, opts.expectedSeq));
    // One at a time per subject, in call order (a pipelined writer's order is the log's order),
    // each against the head the previous one left in the cache.
    return this.inLane(subject, async () => {
      for (let attempt = 1; ; attempt++) {
        const head = this.heads.get(subject) ?? (await this.head(subject));
        try {
          return await this.appendAt(subject, event, head.seq, head.hash);
        } catch (err) {
          if (!(err instanceof VersionConflict) || attempt >= 10) throw err;
        }
      }
    });
  }

  private readonly lanes = new Map<string, Promise<unknown>>();
  /** The highest sequence this store's own appends were acknowledged at (the tail's watchdog). */
  private appendedSeq = 0;

  private inLane<T>(subject: string, f: () => Promise<T>): Promise<T> {
    const run = (this.lanes.get(subject) ?? Promise.resolve()).then(f);
    const settled = run.catch(() => undefined);
    this.lanes.set(subject, settled);
    void settled.then(() => {
      if (this.lanes.get(subject) === settled) this.lanes.delete(subject);
    });
    return run;
  }

  private async appendAt(subject: string, event: BerthEvent, expectedSeq: number, prevHash: string | null): Promise<number> {
    const bytes = encodeEvent({ ...event, prevHash });
    try {
      const ack = await this.js.publish(subject, bytes, {
        msgID: event.eventId,
        timeout: 5_000,
        expect: { lastSubjectSequence: expectedSeq },
      });
      // A duplicate's stored bytes are the first attempt's, not these. On a cluster, a duplicate
      // of a message still being replicated is acknowledged with sequence 0: its sequence is then
      // looked up (an append must answer with where its event is, for the read-back).
      if (ack.duplicate) {
        this.heads.delete(subject);
        const seq = ack.seq > 0 ? ack.seq : await this.committedSeq(subject, expectedSeq);
        this.appendedSeq = Math.max(this.appendedSeq, seq);
        return seq;
      }
      this.appendedSeq = Math.max(this.appendedSeq, ack.seq);
      this.remember(subject, ack.seq, hashOf(bytes));
      return ack.seq;
    } catch (err) {
      this.heads.delete(subject);
      if (
        err instanceof JetStreamApiError &&
        (err.code === JsErr.StreamWrongLastSequence || err.code === JsErr.StreamWrongLastSequenceClustered)
      ) {
        throw new VersionConflict(subject, expectedSeq, { cause: err });
      }
      throw storeError(err);
    }
  }

  /** The subject's last sequence once it is past `after` (a twin's message being committed), within 5 s. */
  private async committedSeq(subject: string, after: number): Promise<number> {
    const until = Date.now() + 5_000;
    for (;;) {
      const seq = await this.lastSeqOf(subject);
      if (seq > after) return seq;
      if (Date.now() > until) throw unavailable(`a duplicate of an event on ${subject} was acknowledged, but it is not in the stream after 5 s`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** The hash of the subject's message at `seq` (null for 0): from what we appended, else the stream. */
  private async hashAt(subject: string, seq: number): Promise<string | null> {
    if (seq === 0) return null;
    const known = this.heads.get(subject);
    if (known?.seq === seq) return known.hash;
    let m;
    try {
      m = await this.jsm.direct.getMessage(this.stream, { seq });
    } catch (err) {
      throw storeError(err);
    }
    // Not the subject's (or gone): the append's expected sequence cannot hold either; let the
    // server say so with a conflict.
    if (!m || m.subject !== subject) return null;
    return hashOf(m.data);
  }

  /** The subject's last message: its sequence (0 when none) and hash. */
  private async head(subject: string): Promise<{ seq: number; hash: string | null }> {
    try {
      const m = await this.jsm.direct.getMessage(this.stream, { last_by_subj: subject });
      return m ? { seq: m.seq, hash: hashOf(m.data) } : { seq: 0, hash: null };
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JsErr.NoMessageFound) return { seq: 0, hash: null };
      throw storeError(err);
    }
  }

  /** Subject → the last message this store appended there, oldest dropped first past HEADS_MAX. */
  private readonly heads = new Map<string, { seq: number; hash: string }>();

  private remember(subject: string, seq: number, hash: string): void {
    this.heads.delete(subject);
    this.heads.set(subject, { seq, hash });
    if (this.heads.size > HEADS_MAX) this.heads.delete(this.heads.keys().next().value!);
  }

  async lastSeq(): Promise<number> {
    try {
      const si = await this.jsm.streams.info(this.stream);
      return si.state.last_seq;
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Sequence of the subject's last message, 0 when it has none. */
  async lastSeqOf(subject: string): Promise<number> {
    try {
      const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
      return m?.seq ?? 0;
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === JsErr.NoMessageFound) return 0;
      throw storeError(err);
    }
  }

  /**
   * Read events in order from `fromSeq` up to `toSeq` (inclusive; default: the end as of now),
   * optionally one literal subject. Calls `onEvent` for each; return false from it to stop early.
   * Messages that fail validation (validate.ts) go to `onRejected` instead, if given.
   */
  async read(
    opts: { fromSeq?: number; toSeq?: number; subject?: string },
    onEvent: (e: StoredEvent) => boolean | void,
    onRejected?: (r: RejectedEvent) => void,
  ): Promise<number> {
    return this.readRaw(opts, (m) => {
      const e = admit(m.subject, m.seq, m.data);
      if (!isRejected(e)) return onEvent(e);
      onRejected?.(e);
    });
  }

  /** As read, but the stored messages as they are: for audits, which hash their bytes. */
  async readRaw(
    opts: { fromSeq?: number; toSeq?: number; subject?: string },
    onMsg: (m: { seq: number; subject: string; data: Uint8Array }) => boolean | void,
  ): Promise<number> {
    // A JetStream between leaders (a server of a cluster lost) is Unavailable, which callers retry.
    return this.readRawOnce(opts, onMsg).catch((err: unknown) => {
      throw storeError(err);
    });
  }

  private async readRawOnce(
    opts: { fromSeq?: number; toSeq?: number; subject?: string },
    onMsg: (m: { seq: number; subject: string; data: Uint8Array }) => boolean | void,
  ): Promise<number> {
    // Reads end at a message that exists, or they would wait for one forever.
    const last = opts.subject ? await this.lastSeqOf(opts.subject) : await this.lastSeq();
    const end = Math.min(opts.toSeq ?? last, last);
    const from = Math.max(1, opts.fromSeq ?? 1);
    if (end < from) return 0;
    const consumer = await this.js.consumers.get(this.stream, {
      ...(opts.subject ? { filter_subjects: opts.subject } : {}),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: from,
    });
    let n = 0;
    const msgs = await consumer.consume({ max_messages: 1000 });
    try {
      for await (const m of msgs) {
        if (m.seq > end) break;
        n++;
        if (onMsg(m) === false) break;
        if (m.seq >= end || m.info.pending === 0) break;
      }
    } finally {
      msgs.stop();
      await consumer.delete().catch(() => undefined);
    }
    return n;
  }

  /** Sequences deleted from the stream (it denies deletes: any is a sign of tampering). */
  async deletedSeqs(): Promise<number[]> {
    try {
      const si = await this.jsm.streams.info(this.stream, { deleted_details: true });
      return si.state.deleted ?? [];
    } catch (err) {
      throw storeError(err);
    }
  }

  /** Every event of one subject (one container's history). */
  async readSubject(subject: string): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    await this.read({ subject }, (e) => void out.push(e));
    return out;
  }

  /**
   * Tail the stream from `fromSeq` on, live, until the returned handle is stopped. The server
   * may go away (restart, failover) and take the ephemeral consumer with it: the tail then starts
   * a new one after the last event it delivered, so no event is skipped or repeated.
   */
  async tail(
    fromSeq: number,
    onEvent: (e: StoredEvent) => void,
    onRejected?: (r: RejectedEvent) => void,
  ): Promise<{ stop: () => Promise<void> }> {
    let next = Math.max(1, fromSeq);
    let stopped = false;
    let current: ConsumerMessages | null = null;
    const open = async (): Promise<ConsumerMessages> => {
      const consumer = await this.js.consumers.get(this.stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: next });
      const msgs = await consumer.consume({ max_messages: 1000, idle_heartbeat: 2_000 });
      void (async () => {
        for await (const s of msgs.status()) {
          // The consumer is gone (or silent): end this round; the loop opens a new one.
          if (s.type === "consumer_deleted" || s.type === "consumer_not_found" || s.type === "stream_not_found" || (s.type === "heartbeats_missed" && s.count >= 2)) {
            msgs.stop();
            break;
          }
        }
      })().catch(() => undefined);
      void msgs.closed().then(() => consumer.delete().catch(() => undefined));
      return msgs;
    };
    current = await open();
    // The watchdog: an event the tail has not delivered within STALL_MS ends the round, and a new
    // consumer starts after the last one delivered. Seen when a server of a cluster is killed: the
    // ordered consumer's own reset can stall for good while the JetStream API is between leaders
    // (no heartbeats then, so no missed ones either). Known at once for what this store appended;
    // for another daemon's events (a migration's target recording it), the stream's last
    // sequence is asked after every STALL_MS of silence.
    let seen = { next, at: Date.now() };
    let probing = false;
    const restart = () => {
      seen = { next, at: Date.now() };
      current?.stop();
    };
    const watchdog = setInterval(() => {
      if (next !== seen.next) seen = { next, at: Date.now() };
      else if (Date.now() - seen.at > STALL_MS) {
        if (this.appendedSeq >= next) return restart();
        if (probing || stopped) return;
        probing = true;
        const at = next;
        this.lastSeq()
          .then((last) => (last >= at && next === at ? restart() : (seen = { next, at: Date.now() })))
          .catch(() => (seen = { next, at: Date.now() }))
          .finally(() => (probing = false));
      }
    }, 500);
    watchdog.unref();
    const loop = (async () => {
      while (!stopped) {
        try {
          for await (const m of current!) {
            if (m.seq < next) continue;
            next = m.seq + 1;
            const e = admit(m.subject, m.seq, m.data);
            if (!isRejected(e)) onEvent(e);
            else onRejected?.(e);
          }
        } catch {
          /* the round ended with an error: open a new one */
        }
        while (!stopped) {
          await new Promise((r) => setTimeout(r, 250));
          if (stopped) break;
          try {
            current = await open();
            break;
          } catch {
            /* the server is still away */
          }
        }
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        clearInterval(watchdog);
        current?.stop();
        await loop.catch(() => undefined);
      },
    };
  }
}

function storeError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const msg = (err as Error)?.message ?? String(err);
  const name = (err as Error)?.name ?? "";
  // JetStreamNotEnabled: what a server answers while its cluster has no JetStream leader yet.
  if (/timeout|no responders|closed|disconnect|connection|jetstream is not enabled/i.test(msg) || name === "TimeoutError" || name === "JetStreamNotEnabled") {
    return unavailable(`event store unavailable: ${msg}`, err);
  }
  return new BerthError(ErrorCode.Internal, `event store: ${msg}`, { cause: err });
}
