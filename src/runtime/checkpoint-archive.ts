// Checkpoint archives in the JetStream object store (bucket `berth_checkpoints`, @nats-io/obj),
// so that any node can fetch them. Streams both ways; the store's SHA-256 digest (native backend)
// and size are checked against the bytes as they are read back, and a mismatch fails the read.
import { createHash } from "node:crypto";
import { Readable, Transform } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm, setSha256Backend, type ObjectStore } from "@nats-io/obj";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { BerthError, ErrorCode, notFound } from "../shared/errors.js";

export const CHECKPOINT_BUCKET = "berth_checkpoints";

export interface StoredArchive {
  sizeBytes: number;
  /** `SHA-256=<base64url>`, as the object store computes it. */
  digest: string;
}

const STREAM = `OBJ_${CHECKPOINT_BUCKET}`;
const CHUNKS = `$O.${CHECKPOINT_BUCKET}.C.`;

/**
 * The chunk size of an archive in the object store (the client caps it at the server's
 * max_payload). The client publishes chunk after chunk, each waiting for its ack, which on a
 * replicated stream is a round trip to a quorum: the library's 128 KiB made a 256 MB dump 2,000
 * round trips.
 */
const CHUNK_BYTES = 1024 * 1024;

export class CheckpointArchive {
  private constructor(
    private readonly os: ObjectStore,
    private readonly jsm: JetStreamManager,
  ) {}

  static async open(nc: NatsConnection, replicas = 1): Promise<CheckpointArchive> {
    setSha256Backend("native");
    return new CheckpointArchive(await new Objm(nc).create(CHECKPOINT_BUCKET, { replicas, storage: "file" as never }), await jetstreamManager(nc));
  }

  /**
   * The chunks of uploads that never finished (a daemon killed during a put: the object store
   * writes an object's chunks first and its meta last, and only a finished put cleans up): every
   * chunk subject that no kept object names and that got no chunk for `idleMs` — an upload in
   * progress, anywhere in the cluster, writes one every few milliseconds. Purged; their subjects
   * are returned.
   */
  async sweep(idleMs: number): Promise<string[]> {
    const live = new Set((await this.os.list()).map((i) => i.nuid));
    const info = await this.jsm.streams.info(STREAM, { subjects_filter: `${CHUNKS}>` });
    const swept: string[] = [];
    for (const subject of Object.keys(info.state.subjects ?? {})) {
      if (live.has(subject.slice(CHUNKS.length))) continue;
      const last = await this.jsm.streams.getMessage(STREAM, { last_by_subj: subject }).catch(() => null);
      if (last && Date.now() - last.time.getTime() < idleMs) continue;
      await this.jsm.streams.purge(STREAM, { filter: subject });
      swept.push(subject);
    }
    return swept;
  }

  async put(id: string, data: Readable): Promise<StoredArchive> {
    const info = await this.os.put({ name: id, options: { max_chunk_size: CHUNK_BYTES } }, Readable.toWeb(data) as unknown as ReadableStream<Uint8Array>);
    return { sizeBytes: info.size, digest: info.digest };
  }

  /**
   * The archive as a stream, and `verified`, which settles once the stream was read to its end:
   * it rejects when its bytes do not match the size and SHA-256 digest the store kept (use what
   * was read only then). The check is ours, on the bytes as they pass: the client's own only
   * errors its stream, which nobody may be reading any more (tar stops at the archive's end).
   * Read it to its end (pipeInto drains what its tool leaves).
   */
  async get(id: string): Promise<{ data: Readable; verified: Promise<void> }> {
    const r = await this.os.get(id);
    if (!r) throw notFound(`checkpoint archive ${id} is not in the object store`);
    const { size, digest } = r.info;
    const want = Buffer.from(digest.replace(/^SHA-256=/, ""), "base64url");
    const hash = createHash("sha256");
    let read = 0;
    let settle!: { resolve: () => void; reject: (e: Error) => void };
    const verified = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    verified.catch(() => undefined);
    const damaged = (why: string) => {
      const e = new BerthError(ErrorCode.RuntimeError, `checkpoint archive ${id} is damaged: ${why}`);
      settle.reject(e);
      return e;
    };
    const data = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        read += chunk.length;
        done(null, chunk);
      },
      flush(done) {
        const got = hash.digest();
        if (read !== size) return done(damaged(`${read} bytes where ${size} were stored`));
        if (!got.equals(want)) return done(damaged(`its SHA-256 is ${got.toString("base64url")}, not the stored ${digest}`));
        settle.resolve();
        done();
      },
    });
    const src = Readable.fromWeb(r.data as unknown as WebReadableStream<Uint8Array>);
    src.once("error", (err) => data.destroy(damaged(err.message.split("\n")[0])));
    // Its failure is `verified`'s and its reader's; it may come before anyone reads (a small archive).
    data.on("error", () => undefined);
    data.once("close", () => src.destroy());
    src.pipe(data);
    return { data, verified };
  }

  async info(id: string): Promise<StoredArchive | null> {
    const i = await this.os.info(id);
    return i && !i.deleted ? { sizeBytes: i.size, digest: i.digest } : null;
  }

  async remove(id: string): Promise<void> {
    if (await this.os.info(id)) await this.os.delete(id);
  }
}
