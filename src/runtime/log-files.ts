// A container's log is a set of files: `ctr.log` (conmon writes it) and the rotated ones,
// `ctr.log.1` (the newest) to `ctr.log.<maxFiles-1>` (the oldest).
//
// conmon 2.1.6 cannot rotate by itself: `--log-size-max` truncates (it reopens `ctr.log` with
// O_TRUNC and the lines in it are gone), and its byte count is never reset by a reopen from
// outside, so it would also truncate files we had rotated already. SIGUSR1 does not reopen either
// (conmon uses it to check its children). What it does offer is its control fifo `<bundle>/ctl`:
// the message `2 0 0\n` (REOPEN_LOGS_EVENT) makes it fsync and close its log fd, then create a
// fresh `ctr.log` (open `ctr.log.tmp` + rename). So the daemon rotates: rename `ctr.log` to
// `ctr.log.1` (conmon keeps writing into it through its fd: nothing is lost), then ask conmon to
// reopen. A line is in exactly one file; readers tell files apart by inode.
//
// Renames and the readers' opening of the file set hold one lock per log (in this process),
// so a reader never sees the set half-shifted.
import { constants } from "node:fs";
import { open, readdir, rename, rm, stat, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** More rotated files than this are not ours (and the spec field allows no more). */
export const MAX_LOG_FILES = 100;
/** conmon's ctrl message type that reopens the log files (src/config.h). */
const REOPEN_LOGS = "2 0 0\n";

export interface LogPolicy {
  maxSizeBytes: number;
  maxFiles: number;
}

const locks = new Map<string, Promise<unknown>>();

/** Runs f alone among the lock holders of this log file (rotation and readers' opening). */
export async function withLogLock<T>(base: string, f: () => Promise<T>): Promise<T> {
  const prev = locks.get(base) ?? Promise.resolve();
  const run = prev.then(f, f);
  const tail = run.catch(() => undefined);
  locks.set(base, tail);
  try {
    return await run;
  } finally {
    if (locks.get(base) === tail) locks.delete(base);
  }
}

export const rotatedPath = (base: string, k: number) => (k === 0 ? base : `${base}.${k}`);

/** Indexes of the rotated files present, ascending (1 = newest). */
export async function rotatedIndexes(base: string): Promise<number[]> {
  const name = basename(base);
  const out: number[] = [];
  for (const f of await readdir(dirname(base)).catch(() => [] as string[])) {
    if (!f.startsWith(`${name}.`)) continue;
    const k = f.slice(name.length + 1);
    if (/^[1-9]\d{0,2}$/.test(k) && Number(k) <= MAX_LOG_FILES) out.push(Number(k));
  }
  return out.sort((a, b) => a - b);
}

export interface OpenLog {
  fh: FileHandle;
  ino: number;
}

/**
 * Opens every file of the log, oldest first, without duplicates. `held`: inodes a follower reads
 * already; only the files newer than those are opened then (all of them if those are gone).
 */
export function openLogFiles(base: string, held: ReadonlySet<number> = new Set()): Promise<OpenLog[]> {
  return withLogLock(base, async () => {
    const out: OpenLog[] = [];
    for (const k of [0, ...(await rotatedIndexes(base))]) {
      let fh: FileHandle;
      try {
        fh = await open(rotatedPath(base, k), "r");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
        await Promise.all(out.map((o) => o.fh.close()));
        throw err;
      }
      const ino = (await fh.stat()).ino;
      // Newest first: a held file means every older one has been read already.
      if (held.has(ino)) {
        await fh.close();
        break;
      }
      if (out.some((o) => o.ino === ino)) await fh.close();
      else out.push({ fh, ino });
    }
    return out.reverse();
  });
}

/** The inode `ctr.log` names now, or null between a rotation's rename and conmon's reopen. */
export async function currentIno(base: string): Promise<number | null> {
  return (await stat(base).catch(() => null))?.ino ?? null;
}

/**
 * Shift the rotated files up by one (dropping what would pass maxFiles), move `ctr.log` to
 * `ctr.log.1`, and have conmon open a fresh `ctr.log`. Returns whether a conmon answered.
 */
export async function rotate(base: string, ctlFifo: string, maxFiles: number): Promise<boolean> {
  return withLogLock(base, async () => {
    const present = await rotatedIndexes(base);
    for (const k of present) if (k + 1 >= maxFiles) await rm(rotatedPath(base, k), { force: true });
    for (const k of [...present].reverse()) if (k + 1 < maxFiles) await rename(rotatedPath(base, k), rotatedPath(base, k + 1));
    try {
      await rename(base, rotatedPath(base, 1));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    const reopened = await askReopen(ctlFifo);
    if (maxFiles === 1 && reopened) {
      // No rotated file is kept: drop the old one once conmon writes to the new one.
      for (let i = 0; i < 100 && (await currentIno(base)) === null; i++) await new Promise((r) => setTimeout(r, 10));
      if ((await currentIno(base)) !== null) await rm(rotatedPath(base, 1), { force: true });
    }
    return reopened;
  });
}

const askReopen = (ctlFifo: string) => sendConmonCtl(ctlFifo, REOPEN_LOGS);

/**
 * One message on conmon's control fifo (`<type> <a> <b>\n`: 1 = window size rows cols, 2 = reopen
 * the log); false when no conmon holds the fifo (ENXIO) or it is gone.
 */
export async function sendConmonCtl(ctlFifo: string, message: string): Promise<boolean> {
  let fh: FileHandle;
  try {
    // Non-blocking: a fifo without a reader must not hang the daemon.
    fh = await open(ctlFifo, constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENXIO" || code === "ENOENT") return false;
    throw err;
  }
  try {
    await fh.write(message);
    return true;
  } finally {
    await fh.close();
  }
}

/** Every file of a container's log, for sizes in tests and tools. */
export async function logFilePaths(base: string): Promise<string[]> {
  return [base, ...(await rotatedIndexes(base)).map((k) => join(dirname(base), `${basename(base)}.${k}`))];
}
