// The container's rootfs: an overlay of the image's unpacked (shared, read-only) rootfs and the
// container's own upper/work dirs. Idempotent both ways, judged by whether the target is a mount point, so a
// crash between mount and config.json (or between runc delete and umount) is simply re-run.
import { readFile, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { RuntimeFailure } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { run, toolPaths } from "./exec.js";

const TIMEOUT_MS = 15_000;
// `-i`: no /sbin/[u]mount.<type> helper lookup; overlay has none, and umount is ~3× faster.

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  superOptions: string;
}

export async function readMountInfo(): Promise<MountEntry[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  const out: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
    const f = line.split(" ");
    const dash = f.indexOf("-", 6);
    if (dash < 0) continue;
    out.push({ mountPoint: unescape(f[4]), fsType: f[dash + 1], superOptions: f[dash + 3] ?? "" });
  }
  return out;
}

/**
 * A mount point lies on another device than its parent directory: two stats instead of parsing
 * every mount of the host (mountinfo grows with every running container, and restarts ask often).
 * Only berth mounts at a container's rootfs, and only overlays, so a same-device bind cannot be
 * mistaken here.
 */
export async function isMounted(target: string): Promise<boolean> {
  const [t, parent] = await Promise.all([stat(target).catch(() => null), stat(dirname(target)).catch(() => null)]);
  return t !== null && parent !== null && t.dev !== parent.dev;
}

export interface OverlayDirs {
  lower: string;
  upper: string;
  work: string;
  target: string;
}

export async function mountOverlay(d: OverlayDirs, log?: Logger): Promise<void> {
  if (await isMounted(d.target)) return;
  for (const p of [d.lower, d.upper, d.work, d.target]) {
    // The option string is comma- and colon-separated; such paths cannot be expressed in it.
    if (/[,:\n]/.test(p)) throw new RuntimeFailure("mount", ["-t", "overlay"], `path '${p}' cannot be used in overlay options`, undefined);
  }
  const opts = `lowerdir=${d.lower},upperdir=${d.upper},workdir=${d.work}`;
  try {
    await run(toolPaths.mount, ["-i", "-t", "overlay", "overlay", "-o", opts, d.target], { timeoutMs: TIMEOUT_MS, log, toolName: "mount" });
  } catch (err) {
    // Two callers racing on the same container: the loser finds it mounted, which is fine.
    if (await isMounted(d.target)) return;
    throw err;
  }
}

export async function unmountOverlay(target: string, log?: Logger): Promise<void> {
  for (let i = 0; i < 8 && (await isMounted(target)); i++) {
    try {
      await run(toolPaths.umount, ["-i", target], { timeoutMs: TIMEOUT_MS, log, toolName: "umount" });
    } catch (err) {
      if (!(await isMounted(target))) return;
      // Still busy (a process of the container lingering in the cgroup's teardown): detach it
      // lazily rather than leaving a mount behind that blocks removing the container dir.
      log?.warn({ target, err: (err as Error).message }, "umount failed, detaching lazily");
      await run(toolPaths.umount, ["-i", "-l", target], { timeoutMs: TIMEOUT_MS, log, toolName: "umount" }).catch(() => undefined);
    }
  }
}
