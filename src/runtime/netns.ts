// Pinned namespaces (CRI-O's pinns, `ip netns`): a namespace kept alive by a bind mount of its
// nsfs file onto a plain file under the data root, so it outlives every process in it. A lone
// container's network namespace is pinned before it first starts and kept until it is removed (its
// IP and port mappings live there); a pod pins net, ipc and uts for all its members. runc joins
// them by path (config.json `linux.namespaces[].path`).
import { statfs, rm, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log.js";
import { run, toolPaths } from "./exec.js";

export type NsKind = "net" | "ipc" | "uts";
export const NS_KINDS: readonly NsKind[] = ["net", "ipc", "uts"];
const NSFS_MAGIC = 0x6e736673;
const TIMEOUT_MS = 10_000;

/** The file is an nsfs mount (a pinned namespace), not the empty file left after a reboot. */
export async function isPinned(file: string): Promise<boolean> {
  const st = await statfs(file).catch(() => null);
  return st !== null && st.type === NSFS_MAGIC;
}

export const nsFile = (dir: string, kind: NsKind) => join(dir, kind);

/**
 * Pins a fresh namespace of each kind in `dir` (files named after the kind) that is not pinned
 * yet; a uts namespace gets `hostname`. Idempotent: pinned ones are kept as they are.
 */
export async function pinNamespaces(dir: string, kinds: readonly NsKind[], opts: { hostname?: string; log?: Logger } = {}): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const missing: NsKind[] = [];
  for (const k of kinds) if (!(await isPinned(nsFile(dir, k)))) missing.push(k);
  if (!missing.length) return;
  for (const k of missing) await writeFile(nsFile(dir, k), "", { mode: 0o600 });
  // One unshare makes them all; with a uts namespace it names it from inside (sethostname).
  const cmd = missing.includes("uts") && opts.hostname ? ["hostname", opts.hostname] : ["true"];
  const args = [...missing.map((k) => `--${k}=${nsFile(dir, k)}`), "--", ...cmd];
  await run(toolPaths.unshare, args, { timeoutMs: TIMEOUT_MS, log: opts.log, toolName: "unshare" });
}

/** Unmounts and removes every pinned namespace file in `dir` (and the dir's other files). */
export async function unpinNamespaces(dir: string, log?: Logger): Promise<void> {
  for (const k of NS_KINDS) {
    const f = nsFile(dir, k);
    for (let i = 0; i < 4 && (await isPinned(f)); i++) {
      // Lazily if busy: a process still inside keeps the namespace, not the mount.
      await run(toolPaths.umount, i ? ["-i", "-l", f] : ["-i", f], { timeoutMs: TIMEOUT_MS, log, toolName: "umount" }).catch((err) => {
        log?.warn({ file: f, err: (err as Error).message }, "umount of a pinned namespace failed");
      });
    }
    await rm(f, { force: true });
  }
}
