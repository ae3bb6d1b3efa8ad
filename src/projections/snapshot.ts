// Snapshots of the read model: the whole model at one stream sequence, as a versioned JSON
// document, gzipped, in the KV bucket `berth_snapshots` under the node's name. Restore = the
// latest snapshot + the events after its sequence; a full replay from 1 must give the same model
// (test/unit/snapshot.spec.ts). A snapshot is only ever a cache of the log: when it is absent,
// corrupt, from another schema or from another stream, it is ignored and the log replayed.
//
// Layout in the bucket (several daemons may share one NATS, so everything is per node):
//   <node>            the manifest: {schema, seq, at, slot, parts, bytes, sha256}, small JSON
//   <node>.<slot>.<i> part i of the gzipped document (a value may not exceed max_payload; dots:
//                     its own subject tokens, so a node's NATS user may be allowed <node>.> only)
// A write fills the slot ("a" or "b") the current manifest does not name, then replaces the
// manifest: a writer that dies half-way leaves the previous snapshot whole.
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import { gunzip as gunzipCb, gzip as gzipCb } from "node:zlib";
import { setImmediate as yieldToLoop } from "node:timers/promises";
import type { NatsConnection } from "@nats-io/transport-node";
import { Kvm, type KV } from "@nats-io/kv";
import type { EventStore } from "../events/store.js";
import { fault } from "../fault.js";
import { logger, type Logger } from "../log.js";
import { OUTCOMES } from "../events/types.js";
import { evolve } from "../aggregates/container/state.js";
import { ReadModel, type ReadModelData } from "./read-model.js";
import { AggregateProjection } from "./registry.js";
import { containerDecider } from "../aggregates/container/index.js";
import { LIFECYCLE_STATES, TRANSITIONS, nextState } from "../aggregates/container/transitions.js";

const gzip = promisify(gzipCb);
const gunzip = promisify(gunzipCb);

/**
 * Bump whenever ContainerState, the read model's shape or evolve's meaning changes: a snapshot
 * folded by other code is not the fold of this code, and must be replayed instead.
 */
export const SNAPSHOT_SCHEMA = 4; // 2: the quarantine (quarantinedTotal, quarantined); 3: containers' ip; 4: revisions and the upgrade saga

/**
 * A digest of the code that folds events into the model (evolve, the read model, the tables), so
 * that a snapshot written by another build is replayed instead of trusted even when nobody
 * remembered to bump SNAPSHOT_SCHEMA. It costs one full replay after an upgrade.
 */
function methods(proto: object): unknown[] {
  return Object.getOwnPropertyNames(proto).map((k) => (proto as Record<string, unknown>)[k]);
}

export const FOLD_FINGERPRINT = createHash("sha256")
  .update([evolve, nextState, ...Object.values(containerDecider), ...methods(ReadModel.prototype), ...methods(AggregateProjection.prototype)].map(String).join("\n"))
  .update(JSON.stringify([TRANSITIONS, OUTCOMES]))
  .digest("hex")
  .slice(0, 16);
export const SNAPSHOT_BUCKET = "berth_snapshots";

/** Which stream a snapshot folds: a stream deleted and created again restarts its sequences. */
export interface StreamRef {
  name: string;
  created: string;
}

export interface SnapshotDoc {
  schema: number;
  /** FOLD_FINGERPRINT of the code that folded it. */
  fold: string;
  /** Last stream sequence folded into `model` (= model.seq). */
  seq: number;
  /** When it was taken (RFC 3339). */
  at: string;
  node: string;
  stream: StreamRef | null;
  model: ReadModelData;
}

interface Manifest {
  schema: number;
  seq: number;
  at: string;
  slot: "a" | "b";
  parts: number;
  /** Size of the gzipped document. */
  bytes: number;
  sha256: string;
}

export interface SnapshotSaved {
  seq: number;
  /** Size of the JSON document and of its gzip, in bytes. */
  jsonBytes: number;
  bytes: number;
  parts: number;
  encodeMs: number;
  writeMs: number;
}

export class SnapshotRejected extends Error {
  override name = "SnapshotRejected";
}

/** The stream as it is now, to stamp a snapshot with and to check one against. */
export async function streamRef(store: EventStore): Promise<StreamRef & { lastSeq: number }> {
  const si = await store.jsm.streams.info(store.stream);
  return { name: si.config.name, created: si.created, lastSeq: si.state.last_seq };
}

/** Take a snapshot document of `model` as it is now (synchronous: one consistent sequence). */
export function takeSnapshot(model: ReadModel, node: string, stream: StreamRef | null): SnapshotDoc {
  const m = model.capture();
  return { schema: SNAPSHOT_SCHEMA, fold: FOLD_FINGERPRINT, seq: m.seq, at: new Date().toISOString(), node, stream, model: m };
}

/** Containers serialized per batch, yielding to the event loop in between. */
const BATCH = 250;

/**
 * JSON, then gzip (on libuv's thread pool). The containers are stringified in batches with a
 * yield between them, so that a large model does not stall event application for long.
 */
export async function encodeSnapshot(doc: SnapshotDoc): Promise<{ gz: Buffer; jsonBytes: number }> {
  const { model, ...head } = doc;
  const { containers, ...rest } = model;
  const parts: string[] = [JSON.stringify(head).slice(0, -1), ',"model":', JSON.stringify(rest).slice(0, -1), ',"containers":['];
  for (let i = 0; i < containers.length; i += BATCH) {
    if (i > 0) {
      parts.push(",");
      await yieldToLoop();
    }
    parts.push(containers.slice(i, i + BATCH).map((c) => JSON.stringify(c)).join(","));
  }
  parts.push("]}}");
  const json = Buffer.from(parts.join(""), "utf8");
  return { gz: await gzip(json), jsonBytes: json.length };
}

/** Gunzip and parse; throws SnapshotRejected saying why the bytes are not a usable snapshot. */
export async function decodeSnapshot(gz: Uint8Array): Promise<SnapshotDoc> {
  let doc: unknown;
  try {
    doc = JSON.parse((await gunzip(gz)).toString("utf8"));
  } catch (err) {
    throw new SnapshotRejected(`not gzipped JSON: ${(err as Error).message}`, { cause: err });
  }
  const why = invalidDoc(doc);
  if (why) throw new SnapshotRejected(why);
  return doc as SnapshotDoc;
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
const isSeq = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const states = new Set<string>(LIFECYCLE_STATES);

/** Why `doc` is not a snapshot this code can load, or null. Checks shape, not every field. */
export function invalidDoc(doc: unknown): string | null {
  if (!isObj(doc)) return "not an object";
  if (doc.schema !== SNAPSHOT_SCHEMA) return `schema ${JSON.stringify(doc.schema)}, this daemon reads ${SNAPSHOT_SCHEMA}`;
  if (doc.fold !== FOLD_FINGERPRINT) return `folded by other code (fingerprint ${JSON.stringify(doc.fold)}, this daemon's is ${FOLD_FINGERPRINT})`;
  if (!isSeq(doc.seq)) return "seq is not a sequence";
  const m = doc.model;
  if (!isObj(m)) return "no model";
  if (m.seq !== doc.seq) return `model.seq ${JSON.stringify(m.seq)} differs from seq ${doc.seq}`;
  if (!isSeq(m.anomalies)) return "model.anomalies is not a count";
  if (!isSeq(m.quarantinedTotal) || !Array.isArray(m.quarantined)) return "model lacks the quarantine";
  for (const q of m.quarantined as unknown[]) {
    if (!isObj(q) || !isSeq(q.seq) || q.seq > doc.seq || typeof q.subject !== "string" || typeof q.reason !== "string") return "a quarantined event is malformed";
  }
  if (!Array.isArray(m.containers) || !Array.isArray(m.images) || !Array.isArray(m.nodes)) return "model lacks containers, images or nodes";
  for (const c of m.containers as unknown[]) {
    if (!isObj(c) || typeof c.id !== "string" || typeof c.name !== "string" || !states.has(c.state as string) || !isObj(c.spec)) {
      return "a container is malformed";
    }
    if (!isSeq(c.version) || c.version > doc.seq) return `container ${String(c.id)} has version ${String(c.version)} beyond seq ${doc.seq}`;
  }
  for (const i of m.images as unknown[]) if (!isObj(i) || typeof i.node !== "string" || typeof i.name !== "string") return "an image is malformed";
  for (const n of m.nodes as unknown[]) if (!isObj(n) || typeof n.name !== "string") return "a node is malformed";
  return null;
}

/** Why a snapshot does not fit the stream as it is now, or null. */
export function misfit(doc: SnapshotDoc, now: StreamRef & { lastSeq: number }): string | null {
  if (doc.stream && (doc.stream.name !== now.name || doc.stream.created !== now.created)) {
    return `it folds stream ${doc.stream.name} created ${doc.stream.created}, the log is ${now.name} created ${now.created}`;
  }
  if (doc.seq > now.lastSeq) return `it covers up to seq ${doc.seq} but the log ends at ${now.lastSeq}`;
  return null;
}

const partKey = (node: string, slot: string, i: number) => `${node}.${slot}.${i}`;

/** The snapshot bucket. */
export class SnapshotStore {
  private readonly log: Logger;

  private constructor(
    readonly kv: KV,
    /** Largest value written, below the server's max_payload (headers and subject need room). */
    readonly partBytes: number,
  ) {
    this.log = logger("snapshot");
  }

  static async open(nc: NatsConnection, opts: { bucket?: string; partBytes?: number; replicas?: number } = {}): Promise<SnapshotStore> {
    const kv = await new Kvm(nc).create(opts.bucket ?? SNAPSHOT_BUCKET, {
      history: 1,
      replicas: opts.replicas ?? 1,
      description: "berth read-model snapshots, one per node",
    });
    const max = nc.info?.max_payload ?? 1024 * 1024;
    return new SnapshotStore(kv, opts.partBytes ?? Math.max(1024, max - 16 * 1024));
  }

  /** Encode and store `doc` as the node's snapshot. One writer per node at a time (the caller's). */
  async save(doc: SnapshotDoc): Promise<SnapshotSaved> {
    const t0 = performance.now();
    const { gz, jsonBytes } = await encodeSnapshot(doc);
    const t1 = performance.now();
    const current = await this.manifest(doc.node).catch(() => null);
    const slot = current?.slot === "a" ? "b" : "a";
    const parts = Math.max(1, Math.ceil(gz.length / this.partBytes));
    await Promise.all(
      Array.from({ length: parts }, (_, i) => this.kv.put(partKey(doc.node, slot, i), gz.subarray(i * this.partBytes, (i + 1) * this.partBytes))),
    );
    // BERTH_FAULT=snapshot-write: die with the new parts written and the manifest not yet.
    fault("snapshot-write");
    const manifest: Manifest = {
      schema: doc.schema,
      seq: doc.seq,
      at: doc.at,
      slot,
      parts,
      bytes: gz.length,
      sha256: createHash("sha256").update(gz).digest("hex"),
    };
    await this.kv.put(doc.node, JSON.stringify(manifest));
    return { seq: doc.seq, jsonBytes, bytes: gz.length, parts, encodeMs: t1 - t0, writeMs: performance.now() - t1 };
  }

  /**
   * The node's latest snapshot, or null (logged with the reason) when there is none or it is
   * corrupt or of another schema: the caller then replays the whole log. Never throws.
   */
  async load(node: string): Promise<SnapshotDoc | null> {
    try {
      // A manifest replaced between reading it and its parts shows as a checksum mismatch: retry.
      for (let attempt = 1; ; attempt++) {
        const got = await this.fetch(node);
        if (got === "absent") {
          this.log.info({ node }, "no snapshot: full replay");
          return null;
        }
        if (got === "changed" && attempt < 3) continue;
        if (got === "changed") throw new SnapshotRejected("checksum mismatch: its parts do not match the manifest");
        if (got.node !== node) throw new SnapshotRejected(`it belongs to node ${got.node}`);
        return got;
      }
    } catch (err) {
      if (err instanceof SnapshotRejected) {
        this.log.warn({ node, reason: err.message }, "snapshot ignored: full replay");
      } else {
        this.log.warn({ node, err }, "snapshot could not be read: full replay");
      }
      return null;
    }
  }

  private async fetch(node: string): Promise<SnapshotDoc | "absent" | "changed"> {
    const m = await this.manifest(node);
    if (!m) return "absent";
    const parts = await Promise.all(Array.from({ length: m.parts }, (_, i) => this.kv.get(partKey(node, m.slot, i))));
    const bufs: Uint8Array[] = [];
    for (const [i, p] of parts.entries()) {
      if (!p || p.operation !== "PUT") throw new SnapshotRejected(`part ${i} of ${m.parts} is missing`);
      bufs.push(p.value);
    }
    const gz = Buffer.concat(bufs);
    if (gz.length !== m.bytes || createHash("sha256").update(gz).digest("hex") !== m.sha256) return "changed";
    const doc = await decodeSnapshot(gz);
    if (doc.seq !== m.seq) throw new SnapshotRejected(`document seq ${doc.seq} differs from the manifest's ${m.seq}`);
    return doc;
  }

  private async manifest(node: string): Promise<Manifest | null> {
    const e = await this.kv.get(node);
    if (!e || e.operation !== "PUT") return null;
    let m: unknown;
    try {
      m = e.json();
    } catch (err) {
      throw new SnapshotRejected("the manifest is not JSON", { cause: err });
    }
    if (!isObj(m)) throw new SnapshotRejected("the manifest is not an object");
    if (m.schema !== SNAPSHOT_SCHEMA) throw new SnapshotRejected(`schema ${JSON.stringify(m.schema)}, this daemon reads ${SNAPSHOT_SCHEMA}`);
    if (!isSeq(m.seq) || (m.slot !== "a" && m.slot !== "b") || !Number.isSafeInteger(m.parts) || (m.parts as number) < 1 || !isSeq(m.bytes) || typeof m.sha256 !== "string") {
      throw new SnapshotRejected("the manifest is malformed");
    }
    return m as unknown as Manifest;
  }
}
