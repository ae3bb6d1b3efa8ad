// Checkpoint archives in the JetStream object store (bucket `berth_checkpoints`, @nats-io/obj),
// so that any node can fetch them. Streams both ways; the store's own SHA-256 digest (native
// backend) is checked when an archive is read back, and a mismatch fails the read.
import { Readable } from "node:stream";
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
    const info = await this.os.put({ name: id }, Readable.toWeb(data) as unknown as ReadableStream<Uint8Array>);
    return { sizeBytes: info.size, digest: info.digest };
  }

  /**
   * The archive as a stream, and `verified`, which settles once it was read to its end: it
   * rejects when its bytes do not match the digest the store kept (use what was read only then).
   */
  async get(id: string): Promise<{ data: Readable; verified: Promise<void> }> {
    const r = await this.os.get(id);
    if (!r) throw notFound(`checkpoint archive ${id} is not in the object store`);
    const data = Readable.fromWeb(r.data as unknown as WebReadableStream<Uint8Array>);
    const verified = r.error.then((err) => {
      if (err) throw new BerthError(ErrorCode.RuntimeError, `checkpoint archive ${id} is damaged: ${err.message}`);
    });
    verified.catch(() => undefined);
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
