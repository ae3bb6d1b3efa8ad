// Mount checks that need the filesystem: a bind source must exist and must not reach into the
// data root (a container must never see other containers' bundles, runc state or volumes by
// another way than a volume mount). Shape rules are the spec's (src/shared/spec-rules.ts, checked by
// the decider); this runs at create and again at each start (the host may have changed meanwhile).
import { realpath } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { invalid } from "../shared/errors.js";
import type { Mount } from "../shared/spec.js";

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

export async function validateMountSources(mounts: readonly Mount[] | undefined, dataRoot: string): Promise<void> {
  if (!mounts?.length) return;
  // The data root may not exist yet (first container on a new node): compare against its
  // resolved spelling then.
  const root = await realpath(dataRoot).catch(() => resolve(dataRoot));
  for (const m of mounts) {
    // Shape is the spec rules' to refuse, with a clearer message; only real paths are looked at.
    if (m.type !== "bind" || typeof m.source !== "string" || !m.source.startsWith("/")) continue;
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
