// Checkpoint and restore with CRIU, through runc (DESIGN.md "Checkpoint, restore, migrate"):
// `runc checkpoint` with the setup's CRIU 4 wrapper dumps a container into an image dir; a
// restore goes through conmon (`--restore DIR`, see HostRuntime.start), which runs `runc restore`
// and watches the restored process as it watches a created one. On failure the error carries
// CRIU's own words from dump.log / restore.log, not just "criu failed".
import { spawn as spawnChild } from "node:child_process";
import { existsSync } from "node:fs";
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeFailure } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { run } from "./exec.js";
import type { DumpStats } from "../shared/host-facts.js";

/** The wrapper the setup makes (CRIU 4.1 in a private prefix); BERTH_CRIU overrides it. */
export const CRIU_PATH = process.env.BERTH_CRIU ?? "/opt/berth/criu/criu";

/**
 * CRIU stops a task leaving its parasite on a hardware breakpoint. On these machines (Firecracker
 * VMs, kernel 6.18) the breakpoint never fires and every dump hangs in the parasite's cleanup
 * (measured: `criu dump` of a `sh` loop waited for its trap for minutes). CRIU's fault code 130
 * (FI_NO_BREAKPOINTS, its documented workaround for Xen guests) makes it step to the sigreturn
 * with PTRACE_SYSCALL instead, which works everywhere. BERTH_CRIU_BREAKPOINTS=1 lets CRIU use them.
 */
export const CRIU_ENV: Record<string, string> = process.env.BERTH_CRIU_BREAKPOINTS === "1" ? {} : { CRIU_FAULT: "130" };

export interface DumpOptions {
  imagePath: string;
  workPath: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  /** Memory only; the container runs on (a later dump's parent). */
  preDump?: boolean;
  /** The previous (pre-)dump's images, relative to imagePath (runc's rule). */
  parentPath?: string;
  timeoutMs?: number;
}

export type { DumpStats };

export const DUMP_DONE = "Dumping finished successfully";

/** `runc checkpoint` of a running container; throws with CRIU's reason when it fails. */
export async function runcCheckpoint(runcPath: string, globalArgs: string[], id: string, o: DumpOptions, log?: Logger): Promise<void> {
  const args = [...globalArgs, `--criu=${CRIU_PATH}`, "checkpoint", "--image-path", o.imagePath, "--work-path", o.workPath];
  if (o.leaveRunning) args.push("--leave-running");
  if (o.tcpEstablished) args.push("--tcp-established");
  if (o.fileLocks) args.push("--file-locks");
  if (o.preDump) args.push("--pre-dump");
  if (o.parentPath) args.push("--parent-path", o.parentPath);
  args.push(id);
  try {
    await run(runcPath, args, { timeoutMs: o.timeoutMs ?? 120_000, log, toolName: "runc", env: CRIU_ENV });
  } catch (err) {
    const why = await criuError(join(o.workPath, "dump.log"));
    const f = err as RuntimeFailure;
    throw new RuntimeFailure("runc", ["checkpoint", id], why ? `criu dump failed: ${why}` : f.stderr ?? String(err), f.exitCode);
  }
}

/** This host's CPU as CRIU sees it (cpuinfo.img in `dir`): what a restore elsewhere is checked against. */
export async function cpuinfoDump(dir: string, log?: Logger): Promise<void> {
  await run(CRIU_PATH, ["cpuinfo", "dump", "-D", dir], { timeoutMs: 30_000, log, toolName: "criu", env: CRIU_ENV });
}

/**
 * Whether this host's CPU has what the checkpoint in `dir` was made on (its cpuinfo.img, when it
 * has one: older archives have none, and CRIU's own restore checks the basics). A RuntimeError
 * with CRIU's words when it has not: the restore would fail, or crash the process later.
 */
export async function cpuinfoCheck(dir: string, log?: Logger): Promise<void> {
  try {
    await stat(join(dir, "cpuinfo.img"));
  } catch {
    return;
  }
  const logFile = join(dir, "..", "cpuinfo-check.log");
  try {
    await run(CRIU_PATH, ["cpuinfo", "check", "-D", dir, "-o", logFile, "-v4"], { timeoutMs: 30_000, log, toolName: "criu", env: CRIU_ENV });
  } catch (err) {
    const why = (await criuError(logFile)) ?? (err as RuntimeFailure).stderr ?? String(err);
    throw new RuntimeFailure("criu", ["cpuinfo", "check"], `the checkpoint was made on a CPU with features this host's lacks: ${why}`, 1);
  } finally {
    await rm(logFile, { force: true });
  }
}

let tracking: Promise<boolean> | null = null;

/** Whether the kernel tracks dirty memory for CRIU (soft-dirty: what a pre-dump needs). Asked once. */
export function memoryTracking(): Promise<boolean> {
  tracking ??= run(CRIU_PATH, ["check", "--feature", "mem_dirty_track"], { timeoutMs: 30_000, toolName: "criu", env: CRIU_ENV }).then(() => true, () => false);
  return tracking;
}

/** Whether a dump in `workPath` ran to its end (its log says so), e.g. after the daemon died during it. */
export async function dumpFinished(workPath: string): Promise<boolean> {
  const text = await readFile(join(workPath, "dump.log"), "utf8").catch(() => "");
  return text.includes(DUMP_DONE);
}

/** The first `Error (…)` lines of a CRIU log: the cause, in CRIU's words. */
export async function criuError(logPath: string): Promise<string | null> {
  if (!existsSync(logPath)) return null;
  const text = await readFile(logPath, "utf8").catch(() => "");
  const errors = text
    .split("\n")
    .filter((l) => /Error \(/.test(l))
    .map((l) => l.replace(/^\(\s*[\d.]+\)\s*/, "").trim());
  return errors.length ? errors.slice(0, 3).join("; ").slice(0, 2000) : null;
}

/**
 * CRIU's stats-dump image: a magic pair, then one length-prefixed protobuf StatsEntry whose
 * field 1 is the DumpStatsEntry (freezing_time 1, frozen_time 2, memdump_time 3, memwrite_time 4,
 * pages_scanned 5, pages_skipped_parent 6, pages_written 7; times in µs). Null when absent or odd.
 */
export async function readDumpStats(imagePath: string): Promise<DumpStats | null> {
  const buf = await readFile(join(imagePath, "stats-dump")).catch(() => null);
  if (!buf || buf.length < 12) return null;
  try {
    const len = buf.readUInt32LE(8);
    const entry = fields(buf.subarray(12, 12 + len));
    const dump = entry.get(1);
    if (!(dump instanceof Uint8Array)) return null;
    const d = fields(dump);
    const n = (k: number) => Number(d.get(k) ?? 0);
    return { freezingMs: n(1) / 1000, frozenMs: n(2) / 1000, memdumpMs: n(3) / 1000, memwriteMs: n(4) / 1000, pagesScanned: n(5), pagesWritten: n(7) };
  } catch {
    return null;
  }
}

/** The varint and length-delimited fields of one protobuf message (enough for CRIU's stats). */
function fields(b: Uint8Array): Map<number, bigint | Uint8Array> {
  const out = new Map<number, bigint | Uint8Array>();
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= b.length) throw new Error("truncated varint");
      const byte = b[i++];
      v |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < b.length) {
    const key = Number(varint());
    const field = key >> 3;
    switch (key & 7) {
      case 0:
        out.set(field, varint());
        break;
      case 2: {
        const len = Number(varint());
        out.set(field, b.subarray(i, i + len));
        i += len;
        break;
      }
      case 1:
        i += 8;
        break;
      case 5:
        i += 4;
        break;
      default:
        throw new Error("unsupported wire type");
    }
  }
  return out;
}

let lazySupport: Promise<boolean> | null = null;

/**
 * Whether restores may fault their memory in from CRIU's lazy-pages daemon (userfaultfd, the
 * non-cooperative kind a process tree that forks needs). Asked once; BERTH_LAZY_PAGES=0 turns it off.
 */
export function lazyPagesSupported(): Promise<boolean> {
  if (process.env.BERTH_LAZY_PAGES === "0") return Promise.resolve(false);
  lazySupport ??= run(CRIU_PATH, ["check", "--feature", "uffd-noncoop"], { timeoutMs: 30_000, toolName: "criu", env: CRIU_ENV }).then(() => true, () => false);
  return lazySupport;
}

/** Below this much dumped memory a plain restore is as quick (the daemon's own start costs ~70 ms here). */
export const LAZY_PAGES_MIN_BYTES = Number(process.env.BERTH_LAZY_PAGES_MIN_MB ?? 16) * 1024 * 1024;

/** The bytes of memory pages in a dump's images (its pages-N.img files). */
export async function dumpedPageBytes(imagesDir: string): Promise<number> {
  const names = (await readdir(imagesDir).catch(() => [] as string[])).filter((n) => /^pages-\d+\.img$/.test(n));
  const sizes = await Promise.all(names.map((n) => stat(join(imagesDir, n)).then((s) => s.size, () => 0)));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Longest a lazy-pages daemon may live: it serves pages from local files, so seconds; a stuck one is killed. */
const LAZY_PAGES_MAX_SEC = 300;
const LAZY_SOCKET = "lazy-pages.socket";

export interface LazyPages {
  /** Its socket is up: a restore with `--lazy-pages` in the same work dir may begin. */
  ready: Promise<void>;
  /** It has handed every page over (or was stopped); rejects never. */
  done: Promise<number | null>;
  /** Stop it (its restore failed or was not begun). */
  stop(): void;
}

/**
 * CRIU's lazy-pages daemon for a restore from `imagesDir` (DESIGN.md "Checkpoint, restore,
 * migrate"): the restored process starts before its memory is copied in, and the daemon copies it
 * (UFFDIO_COPY, ~2.5× quicker here than the plain restore's faulting read: 256 MB in ~0.4 s
 * against ~1.0 s) while it runs, faults first. Its own session, like conmon, so that a daemon
 * killed meanwhile does not take it along; bounded by `timeout` in case its restore never comes.
 */
export function startLazyPages(imagesDir: string, workDir: string, log?: Logger): LazyPages {
  const child = spawnChild("timeout", ["-s", "KILL", String(LAZY_PAGES_MAX_SEC), CRIU_PATH, "lazy-pages", "--images-dir", imagesDir, "--work-dir", workDir, "-o", "lazy-pages.log", "-v4"], {
    detached: true, stdio: "ignore", env: { ...process.env, ...CRIU_ENV },
  });
  child.unref();
  const done = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.once("error", () => resolve(null));
  });
  const ready = (async () => {
    let exited = false;
    void done.then(() => (exited = true));
    for (const until = Date.now() + 10_000; Date.now() < until && !exited; ) {
      if (existsSync(join(workDir, LAZY_SOCKET))) return;
      await new Promise((r) => setTimeout(r, 2));
    }
    const why = (await criuError(join(workDir, "lazy-pages.log"))) ?? (exited ? "it exited" : "no socket within 10 s");
    throw new RuntimeFailure("criu", ["lazy-pages"], `criu lazy-pages did not start: ${why}`, 1);
  })();
  ready.catch(() => undefined);
  return {
    ready,
    done,
    stop() {
      try {
        // timeout's group: itself and the criu it runs.
        if (child.pid) process.kill(-child.pid, "SIGKILL");
      } catch {
        /* gone */
      }
      log?.debug({ imagesDir }, "lazy-pages stopped");
    },
  };
}
