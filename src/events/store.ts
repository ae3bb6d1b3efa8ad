// The event store on JetStream: append with optimistic concurrency and idempotency, read one
// subject, read everything after a sequence, tail live. Full replays read the stream unfiltered
// and filter only by literal subjects (DESIGN.md: wildcard filters are 10× slower here).
import type { NatsConnection } from "@nats-io/transport-node";
import {
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type ConsumerMessages,
  type StreamInfo,
  StorageType,
  DiscardPolicy,
} from "@nats-io/jetstream";
import { BerthError, ErrorCode, VersionConflict, unavailable } from "../shared/errors.js";
import { SUBJECT_ROOT, STREAM, type BerthEvent, type StoredEvent } from "./types.js";
import { decodeEvent, encodeEvent } from "./codec.js";

/** JetStream API error codes we act on. */
export const JsErr = {
  StreamWrongLastSequence: 10071,
  StreamWrongLastSequenceClustered: 10164,
  NoMessageFound: 10037,
} as const;

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

  static async open(nc: NatsConnection, opts: { stream?: string; duplicateWindowMs?: number } = {}): Promise<EventStore> {
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

  /** Append one event; returns its stream sequence. Throws VersionConflict on a stale version. */
  async append(subject: string, event: BerthEvent, opts: AppendOptions = {}): Promise<number> {
    try {
      const ack = await this.js.publish(subject, encodeEvent(event), {
        msgID: event.eventId,
        timeout: 5_000,
        ...(opts.expectedSeq !== undefined ? { expect: { lastSubjectSequence: opts.expectedSeq } } : {}),
      });
      return ack.seq;
    } catch (err) {
      if (
        err instanceof JetStreamApiError &&
        (err.code === JsErr.StreamWrongLastSequence || err.code === JsErr.StreamWrongLastSequenceClustered)
      ) {
        throw new VersionConflict(subject, opts.expectedSeq ?? -1, { cause: err });
      }
      throw storeError(err);
    }
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
   */
  async read(
    opts: { fromSeq?: number; toSeq?: number; subject?: string },
    onEvent: (e: StoredEvent) => boolean | void,
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
        if (onEvent(toStored(m)) === false) break;
        if (m.seq >= end || m.info.pending === 0) break;
      }
    } finally {
      msgs.stop();
      await consumer.delete().catch(() => undefined);
    }
    return n;
  }

  /** Every event of one subject (one container's history). */
  async readSubject(subject: string): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    await this.read({ subject }, (e) => void out.push(e));
    return out;
  }

  /** Tail the stream from `fromSeq` on, live, until the returned handle is stopped. */
  /**
   * Tail the stream from `fromSeq` on, live, until the returned handle is stopped. The server
   * may go away (restart, failover) and take the ephemeral consumer with it: the tail then starts
   * a new one after the last event it delivered, so no event is skipped or repeated.
   */
  async tail(fromSeq: number, onEvent: (e: StoredEvent) => void): Promise<{ stop: () => Promise<void> }> {
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
    const loop = (async () => {
      while (!stopped) {
        try {
          for await (const m of current!) {
            if (m.seq < next) continue;
            next = m.seq + 1;
            onEvent(toStored(m));
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
        current?.stop();
        await loop.catch(() => undefined);
      },
    };
  }
}

function toStored(m: JsMsg): StoredEvent {
  // The decoded object is ours alone: adding to it costs a third of copying it (replay speed).
  const e = decodeEvent(m.data) as StoredEvent;
  e.seq = m.seq;
  e.subject = m.subject;
  return e;
}

function storeError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const msg = (err as Error)?.message ?? String(err);
  if (/timeout|no responders|closed|disconnect|connection/i.test(msg)) {
    return unavailable(`event store unavailable: ${msg}`, err);
  }
  return new BerthError(ErrorCode.Internal, `event store: ${msg}`, { cause: err });
}
