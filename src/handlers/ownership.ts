// Which node must act on a command itself: the one whose host holds what it touches. Container
// lifecycle commands need no such node (any daemon appends the intent; the owner's executor acts
// on it), but an exec runs on the container's host, and a pod's commands touch its namespaces.
import type { ReadModel } from "../projections/read-model.js";
import { isPodCheckpoint } from "../aggregates/checkpoint/index.js";

export function ownerOf(model: ReadModel, verb: string, body: Record<string, unknown>): string | null {
  const ref = typeof body.id === "string" ? body.id : null;
  if (verb === "container.exec") {
    const r = ref ? model.resolve(ref) : null;
    return r?.ok ? r.c.node : null;
  }
  if (verb === "pod.restore") {
    const id = typeof body.checkpointId === "string" ? body.checkpointId : "";
    if (id.length < 4) return null;
    const hits = [...model.checkpoints.values()].filter((c) => !c.removed && isPodCheckpoint(c) && c.id.startsWith(id));
    if (hits.length !== 1) return null;
    const pod = isPodCheckpoint(hits[0]) ? model.pods.get(hits[0].pod) : undefined;
    return pod?.node ?? hits[0].node;
  }
  if (!ref || !verb.startsWith("pod.")) return null;
  try {
    return model.pods.get(model.podIdOf(ref))?.node ?? null;
  } catch {
    return null;
  }
}
