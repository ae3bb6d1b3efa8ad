// Facts the runtime adapters report. The runtime decides nothing: it runs a tool and says what
// happened (pid, exit code, times) or throws a RuntimeFailure carrying the tool's own stderr.
import type { ContainerSpec } from "./spec.js";

/** An image's config as the OCI image config says it (Docker's precedence rules apply later). */
export interface ImageConfig {
  entrypoint: string[] | null;
  cmd: string[] | null;
  env: string[];
  workdir: string;
  user: string;
  stopSignal: string | null;
  labels: Record<string, string>;
  /** The paths it declares as volumes (VOLUME); records imported before this field lack it. */
  volumes?: string[];
}

export interface ImageRecord {
  /** The name it was imported as, e.g. `busybox:latest`. */
  name: string;
  /** `sha256:<64 hex>` of the image manifest. */
  digest: string;
  config: ImageConfig;
  sizeBytes: number;
  /** The unpacked, read-only root filesystem used as overlay lowerdir. */
  rootfs: string;
  importedAt: string;
}

/** What a container's exit looked like, read back from conmon's exit file. */
export interface ExitInfo {
  exitCode: number;
  oomKilled: boolean;
  /** RFC 3339: the exit file's mtime, i.e. when the process really exited. */
  exitedAt: string;
}

/** `runc state` / `runc list` as facts. */
export interface RuncState {
  id: string;
  status: "creating" | "created" | "running" | "paused" | "stopped";
  pid: number;
  bundle: string;
  created: string;
}

export interface StartResult {
  /** A restore whose memory came from CRIU's lazy-pages daemon (criu.ts). */
  lazyPages?: boolean;
  pid: number;
  startedAt: string;
  conmonPid: number;
}

/** Everything the runtime needs to build a bundle for a container. */
export interface PrepareInput {
  id: string;
  name: string;
  spec: ContainerSpec;
  image: ImageRecord;
  /** Bridge or pod: the pinned namespaces it joins and its IP there. */
  net?: NetSetup;
  /** A pod member: its cgroup lives below the pod's. */
  pod?: string;
  /** Whose rw layer its rootfs uses (0 when absent). */
  revision?: number;
  /**
   * false: its rootfs is left unmounted, for start() to mount (a restore puts the checkpoint's rw
   * layer in place first, and unmounting an overlay syncs its whole upper filesystem: with a big
   * checkpoint just unpacked there, a second or more of the container's downtime).
   */
  mount?: boolean;
}

export interface NetSetup {
  namespacePaths: Partial<Record<"network" | "ipc" | "uts", string>>;
  ip: string | null;
  /** A pod member's hostname is the pod's. */
  hostname?: string;
}

export interface LogLine {
  time: string;
  stream: "stdout" | "stderr";
  text: string;
}

/** What a command run in a container said and how it ended. */
export interface ExecResult {
  /** The process's exit code; -1 when it was killed for running past its timeout (or aborted). */
  exitCode: number;
  /** What it wrote to stdout and stderr, each cut after `maxOutput` bytes. */
  stdout: string;
  stderr: string;
  /** Some output was cut. */
  truncated: boolean;
  timedOut: boolean;
}

/** Who the exec'd process runs as: runc's `--user uid:gid` and `--additional-gids`. */
export interface ExecUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

/** A process on a terminal: bytes out, bytes in, window size, and how it ended. */
export interface TtyProcess {
  onData(cb: (data: Buffer) => void): void;
  write(data: Buffer | string): void;
  resize(cols: number, rows: number): void;
  /** Stop reading its output for a while (the client is slow), and go on. */
  pause(): void;
  resume(): void;
  /** End it and everything it started. */
  kill(): Promise<void>;
  /** Its exit code (128 + n for a signal). */
  readonly exited: Promise<number>;
}

/**
 * A client's hold on a container's terminal (conmon's attach socket): its output from the moment
 * of attaching (from the start of the run for the first client of a run), input, window size.
 * Detaching leaves the container running; `ended` resolves when its terminal is gone (the
 * container exited, or conmon did).
 */
export interface ConsoleSession {
  onData(cb: (data: Buffer) => void): void;
  write(data: Buffer): void;
  resize(cols: number, rows: number): Promise<void>;
  detach(): void;
  readonly ended: Promise<void>;
}

/** CRIU's dump statistics (its µs as ms). */
export interface DumpStats {
  freezingMs: number;
  frozenMs: number;
  memdumpMs: number;
  memwriteMs: number;
  pagesScanned: number;
  pagesWritten: number;
}

/**
 * A checkpoint's archive as its source host sends it (archive-transfer.ts): as a stream (NATS
 * frames), or written by the archiver itself into a connected socket (no JavaScript in the data
 * path); and the digest of what it holds, which the receiving host checks once it is unpacked.
 */
export interface ArchiveSource {
  stream(): import("node:stream").Readable;
  sendTo(sock: import("node:net").Socket, signal: AbortSignal): Promise<void>;
  digest(): Promise<string>;
}

/** Where a received checkpoint archive goes: unpacked from a stream or straight from a socket; then its digest (the same as ArchiveSource.digest of the same files). */
export interface ArchiveSink {
  fromStream(data: import("node:stream").Readable, signal: AbortSignal): Promise<void>;
  fromSocket(sock: import("node:net").Socket, signal: AbortSignal): Promise<void>;
  digest(): Promise<string>;
}
