// `checkpoint.remove`: a checkpoint's record says it is gone (CheckpointRemoved), then its archive
// leaves the object store. In that order: a crash between the two leaves an archive nobody lists
// (the next remove or retention pass of the same id deletes it), never a listed checkpoint whose
// archive is missing. A pod checkpoint's record goes before its members' checkpoints, for the
// same reason: never a listed pod checkpoint with a member missing.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { Meta } from "../events/types.js";
import { invalid, notFound } from "../shared/errors.js";
import { ContainerSpec, NAME_PATTERN } from "../shared/spec.js";
import type { Projector } from "../projections/projector.js";
import { isPodCheckpoint, type CheckpointCommands } from "../aggregates/checkpoint/index.js";
import type { PodCheckpointCreatedData } from "../events/types.js";
import { ctxFromMeta, factKey, type Ctx, type RequestJournal } from "./command-service.js";
import type { ArchivePort } from "./ports.js";

/** What an imported archive's meta.json must say (the checkpoint saga writes it). */
const ImportMeta = Type.Object({
  container: Type.String({ pattern: "^[0-9a-f]{64}$" }),
  name: Type.String({ pattern: NAME_PATTERN }),
  image: Type.String({ minLength: 1, maxLength: 512 }),
  imageDigest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }),
  spec: ContainerSpec,
  ip: Type.Optional(Type.Union([Type.String({ maxLength: 64 }), Type.Null()])),
  node: Type.String({ pattern: NAME_PATTERN }),
});

/** An import bigger than this is refused (the archive is kept on disk while it is checked). */
export const MAX_IMPORT_BYTES = 16 * 1024 ** 3;

/** The host's part of an import (HostRuntime implements it). */
export interface ImportHost {
  importCheckpoint(checkpointId: string, data: Readable, maxBytes: number): Promise<unknown>;
  packCheckpoint(checkpointId: string): Readable;
  removeCheckpointDir(checkpointId: string): Promise<void>;
}

export class CheckpointService {
  constructor(
    private readonly d: { node: string; projector: Projector; checkpoints: CheckpointCommands; archive: ArchivePort; host?: ImportHost },
  ) {}

  /** A checkpoint's archive as stored (the export). */
  async exportArchive(ref: string): Promise<{ checkpointId: string; data: Readable }> {
    const checkpointId = this.resolve(ref);
    return { checkpointId, data: (await this.d.archive.get(checkpointId)).data };
  }

  /**
   * An archive made elsewhere (an export): checked, unpacked, packed again from what was
   * checked into the object store, and recorded as a checkpoint of this node. Its container is
   * the one it was taken of; a restore makes a new container from it (by the name it had, or another).
   */
  async importArchive(data: Readable, o: { meta?: Meta } = {}): Promise<{ checkpointId: string; containerName: string }> {
    const host = this.d.host;
    if (!host) throw invalid("this daemon cannot import checkpoints");
    const checkpointId = randomBytes(32).toString("hex");
    try {
      const meta = await host.importCheckpoint(checkpointId, data, MAX_IMPORT_BYTES);
      if (!Value.Check(ImportMeta, meta)) {
        const e = Value.Errors(ImportMeta, meta).First();
        throw invalid(`not a berth checkpoint archive: meta.json ${e ? `${e.path || "/"} ${e.message}` : "is not berth's"}`);
      }
      if (!this.d.projector.model.image(this.d.node, meta.imageDigest)) {
        throw notFound(`the checkpoint's image ${meta.image} (${meta.imageDigest}) is not on node ${this.d.node}: import it first`);
      }
      const t0 = performance.now();
      const stored = await this.d.archive.put(checkpointId, host.packCheckpoint(checkpointId));
      const ctx = ctxFromMeta(this.d.node, o.meta, "anonymous");
      await this.d.checkpoints.handle(checkpointId, {
        type: "Create",
        data: {
          checkpointId, container: meta.container, containerName: meta.name, pod: null, node: this.d.node,
          // Its pod and its node are the exporter's: here it is a container of this node of its own.
          image: meta.image, imageDigest: meta.imageDigest, spec: withoutPod({ ...meta.spec, node: this.d.node }),
          sizeBytes: stored.sizeBytes, digest: stored.digest, durationMs: Math.round(performance.now() - t0), frozenMs: 0,
          dumpMs: 0, uploadMs: Math.round(performance.now() - t0), leaveRunning: true, tcpEstablished: false,
        },
      }, ctx);
      return { checkpointId, containerName: meta.name };
    } finally {
      await host.removeCheckpointDir(checkpointId);
    }
  }

  /** A checkpoint by its full id or a unique prefix of ≥ 4 characters. */
  resolve(ref: string): string {
    const all = [...this.d.projector.model.checkpoints.values()].filter((c) => !c.removed);
    const hit = all.find((c) => c.id === ref) ?? (ref.length >= 4 ? all.filter((c) => c.id.startsWith(ref)) : []);
    if (Array.isArray(hit)) {
      if (hit.length === 1) return hit[0].id;
      throw notFound(hit.length ? `checkpoint id prefix '${ref}' is ambiguous` : `no checkpoint '${ref}'`);
    }
    return hit.id;
  }

  async remove(ref: string, o: { meta?: Meta; request?: RequestJournal } = {}): Promise<{ checkpointId: string }> {
    const checkpointId = o.request?.retry && o.request.id ? o.request.id : this.resolve(ref);
    await o.request?.noteId(checkpointId);
    await this.drop(checkpointId, "removed by request", ctxFromMeta(this.d.node, o.meta, "anonymous"));
    return { checkpointId };
  }

  /**
   * A checkpoint goes (the retention rule, a failed pod checkpoint, a request): its record, then
   * its archive; a pod checkpoint's record, then each member's. Each step is a no-op when done.
   */
  async drop(checkpointId: string, reason: string, ctx: Ctx): Promise<void> {
    const s = this.d.projector.model.checkpoints.get(checkpointId);
    if (s && !s.removed) {
      await this.d.checkpoints.appendDecided(checkpointId, (now) => (now && !now.removed ? [{ type: "CheckpointRemoved", data: { checkpointId, reason } }] : []),
        { ...ctx, requestId: factKey(checkpointId, "CheckpointRemoved", reason) }, "CheckpointRemoved");
    }
    if (s && isPodCheckpoint(s)) {
      for (const m of s.members) await this.drop(m.checkpointId, `its pod checkpoint ${checkpointId.slice(0, 12)} was removed`, ctx);
    } else {
      await this.d.archive.remove(checkpointId);
    }
  }

  /** A pod checkpoint's record, once every member's checkpoint is recorded (the pod checkpoint saga). */
  async recordPod(data: PodCheckpointCreatedData, ctx: Ctx, giveUp: () => boolean): Promise<void> {
    await this.d.checkpoints.appendFact(data.checkpointId, (s) => (s ? [] : [{ type: "PodCheckpointCreated", data }]),
      { ...ctx, requestId: factKey(data.checkpointId, "PodCheckpointCreated", data.checkpointId) }, "PodCheckpointCreated", giveUp);
  }

  /** A restore of a pod checkpoint is on its record too. */
  async recordRestore(checkpointId: string, into: string, durationMs: number, ctx: Ctx, key: string): Promise<void> {
    await this.d.checkpoints.appendDecided(checkpointId, (s) => (s && !s.removed ? [{ type: "CheckpointRestored", data: { checkpointId, container: into, durationMs } }] : []),
      { ...ctx, requestId: factKey(checkpointId, "CheckpointRestored", key) }, "CheckpointRestored");
  }
}

function withoutPod(spec: ContainerSpec): ContainerSpec {
  const { pod: _pod, ...rest } = spec;
  return rest;
}
