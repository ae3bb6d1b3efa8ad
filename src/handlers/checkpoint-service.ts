// `checkpoint.remove`: a checkpoint's record says it is gone (CheckpointRemoved), then its archive
// leaves the object store. In that order: a crash between the two leaves an archive nobody lists
// (the next remove or retention pass of the same id deletes it), never a listed checkpoint whose
// archive is missing.
import type { Meta } from "../events/types.js";
import { notFound } from "../shared/errors.js";
import type { Projector } from "../projections/projector.js";
import type { CheckpointCommands } from "../aggregates/checkpoint/index.js";
import { ctxFromMeta, type RequestJournal } from "./command-service.js";
import type { ArchivePort } from "./ports.js";

export class CheckpointService {
  constructor(
    private readonly d: { node: string; projector: Projector; checkpoints: CheckpointCommands; archive: ArchivePort },
  ) {}

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
    const ctx = ctxFromMeta(this.d.node, o.meta, "anonymous");
    const s = this.d.projector.model.checkpoints.get(checkpointId);
    if (s && !s.removed) await this.d.checkpoints.handle(checkpointId, { type: "Remove", reason: "removed by request" }, ctx);
    await this.d.archive.remove(checkpointId);
    return { checkpointId };
  }
}
