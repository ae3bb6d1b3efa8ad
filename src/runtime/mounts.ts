// Mount checks that need the filesystem: a bind source must exist and must not reach into the
// data root (a container must never see other containers' bundles, runc state or volumes by
// another way than a volume mount). Shape rules live in oci-spec.ts (pure) and are reused here.
import { realpath } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { invalid } from "../shared/errors.js";
import type { Mount } from "../shared/spec.js";
import { checkMountShape, normTarget } from "./oci-spec.js";

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

export async function validateMountSources(mounts: readonly Mount[] | undefined, dataRoot: string): Promise<void> {
  if (!mounts?.length) return;
  // The data root may not exist yet (first container on a new node): compare against its
  // resolved spelling then.
  const root = await realpath(dataRoot).catch(() => resolve(dataRoot));
  const targets = new Set<string>();
  for (const m of mounts) {
    checkMountShape(m);
    const t = normTarget(m.target);
    if (targets.has(t)) throw invalid(`two mounts target '${t}'`);
    targets.add(t);
    if (m.type !== "bind") continue;
    let real: string;
    try {
      real = await realpath(m.source!);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw invalid(`bind source '${m.source}' ${code === "ENOENT" ? "does not exist" : `cannot be resolved (${code})`}`);
    }
    if (inside(real, root)) {
      throw invalid(`bind source '${m.source}' is inside the data root; use a volume instead`);
    }
  }
}
