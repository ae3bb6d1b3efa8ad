// Checkpoint archives in the JetStream object store (bucket `berth_checkpoints`, @nats-io/obj),
// so that any node can fetch them. Streams both ways; the store's own SHA-256 digest (native
// backend) is checked when an archive is read back, and a mismatch fails the read.
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm, setSha256Backend, type ObjectStore } from "@nats-io/obj";
import { BerthError, ErrorCode, notFound } from "../shared/errors.js";

export const CHECKPOINT_BUCKET = "berth_checkpoints";

export interface StoredArchive {
  sizeBytes: number;
  /** `SHA-256=<base64url>`, as the object store computes it. */
  digest: string;
}

export class CheckpointArchive {
  private constructor(private readonly os: ObjectStore) {}

  static async open(nc: NatsConnection, replicas = 1): Promise<CheckpointArchive> {
    setSha256Backend("native");
    return new CheckpointArchive(await new Objm(nc).create(CHECKPOINT_BUCKET, { replicas, storage: "file" as never }));
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
