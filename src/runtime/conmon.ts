// One conmon per container, started so that it outlives the daemon: conmon forks, its parent
// writes --conmon-pidfile and exits, the child calls setsid() and becomes the container's
// subreaper, log writer and exit-file writer. We start it detached (own session from the first
// instant), with no stdio tied to us, and unref it.
//
// Why not execa here: conmon keeps the sync pipe's write end open for the container's lifetime,
// and execa would wait for every pipe to close. node:child_process lets us read one message and
// let go.
//
// conmon reports `runc create` through the sync pipe (_OCI_SYNCPIPE): `{"data": <pid>}` on
// success, `{"data": -1, "message": "<runc stderr>"}` on failure. EOF without a message means
// conmon died early (its stderr, then runc's --log file, say why).
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { RuntimeFailure } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { toolEnv, toolPaths } from "./exec.js";
import { CRIU_ENV, CRIU_PATH } from "./criu.js";
import { processStart } from "./session.js";

export interface ConmonOptions {
  conmonPath?: string;
  /** Absolute: conmon does not search PATH. */
  runcPath: string;
  /** runc global args in `--flag=value` form (conmon passes each --runtime-arg as one word). */
  runtimeArgs: string[];
  id: string;
  name: string;
  bundle: string;
  pidFile: string;
  conmonPidFile: string;
  exitDir: string;
  socketDir: string;
  logPath: string;
  persistDir: string;
  /** runc's own --log, read back when create fails without a message. */
  runcLog: string;
  timeoutMs: number;
  log: Logger;
  /**
   * The process has a terminal (config.json `process.terminal`): conmon takes its pty master
   * from runc's console socket and serves it on `<socketDir>/<id>/attach` (console.ts).
   */
  terminal?: boolean;
  /** Attached clients' input reaches the terminal; it stays open when one detaches, for the next. */
  stdin?: boolean;
  /** Restore the process a checkpoint froze (conmon runs `runc restore`) instead of creating one. */
  restore?: RestoreFrom;
}

/** A checkpoint's CRIU images and the restore's work dir (its restore.log), and CRIU's options. */
export interface RestoreFrom {
  imagePath: string;
  workPath: string;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  /** Its memory from CRIU's lazy-pages daemon, already listening in `workPath` (criu.ts startLazyPages). */
  lazyPages?: boolean;
}

export interface ConmonStarted {
  /** The container's init pid, in `created` state (runc start still to come). */
  pid: number;
  conmonPid: number;
}

export function conmonArgs(o: ConmonOptions): string[] {
  // --cid first: RuntimeFailure's message names the first arg.
  const args = [
    `--cid=${o.id}`,
    "--api-version", "1",
    "-u", o.id,
    "-n", o.name,
    "-r", o.runcPath,
    "-b", o.bundle,
    "-p", o.pidFile,
    "--conmon-pidfile", o.conmonPidFile,
    "--exit-dir", o.exitDir,
    "--socket-dir-path", o.socketDir,
    "--persist-dir", o.persistDir,
    "-l", `k8s-file:${o.logPath}`,
    "--log-level", "warn",
  ];
  if (o.terminal) args.push("-t");
  if (o.stdin) args.push("-i", "--leave-stdin-open");
  const runtimeArgs = [...o.runtimeArgs, `--log=${o.runcLog}`, "--log-format=json"];
  if (o.restore) {
    runtimeArgs.push(`--criu=${CRIU_PATH}`);
    args.push("--restore", o.restore.imagePath, "--runtime-opt", `--work-path=${o.restore.workPath}`);
    if (o.restore.tcpEstablished) args.push("--runtime-opt", "--tcp-established");
    if (o.restore.fileLocks) args.push("--runtime-opt", "--file-locks");
    if (o.restore.lazyPages) args.push("--runtime-opt", "--lazy-pages");
  }
  for (const a of runtimeArgs) args.push("--runtime-arg", a);
  return args;
}

/** runc --log-format=json lines → their error messages, for a failure report. */
async function runcLogErrors(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  const msgs: string[] = [];
  for (const line of text.split("\n")) {
    try {
      const j = JSON.parse(line) as { level?: string; msg?: string };
      if ((j.level === "error" || j.level === "fatal") && j.msg) msgs.push(j.msg);
    } catch {
      /* not json */
    }
  }
  return msgs.join("\n");
}

export async function readPid(file: string): Promise<number | null> {
  const s = await readFile(file, "utf8").catch(() => "");
  const n = Number.parseInt(s.trim(), 10);
  return Number.isInteger(n) && n > 0 ? n : null;
}

export function startConmon(o: ConmonOptions): Promise<ConmonStarted> {
  const path = o.conmonPath ?? toolPaths.conmon;
  const args = conmonArgs(o);
  const fail = (stderr: string, code?: number) => new RuntimeFailure("conmon", args, stderr, code);
  // A failed `runc create` is runc's failure, in runc's words.
  const createFailed = (stderr: string) => new RuntimeFailure("runc", ["create", "--bundle", o.bundle, o.id], stderr, 1);

  return new Promise<ConmonStarted>((resolvePromise, rejectPromise) => {
    let settled = false;
    let reported = false;
    let syncBuf = "";
    let stderr = "";
    let parentExit: number | null | undefined;
    const child = spawn(path, args, {
      detached: true,
      cwd: o.persistDir,
      stdio: ["ignore", "ignore", "pipe", "pipe"],
      env: toolEnv({ _OCI_SYNCPIPE: "3", ...(o.restore ? CRIU_ENV : {}) }),
    });
    const sync = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    const errStream = child.stderr!;

    const finish = (err: Error | null, value?: ConmonStarted) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sync.destroy();
      errStream.destroy();
      child.unref();
      if (err) rejectPromise(err);
      else resolvePromise(value!);
    };

    const timer = setTimeout(async () => {
      // Only ours to stop: the conmon we just started, by the pid it wrote.
      const cpid = await readPid(o.conmonPidFile);
      if (cpid) try { process.kill(cpid, "SIGKILL"); } catch { /* gone */ }
      const why = (await runcLogErrors(o.runcLog)) || stderr;
      finish(fail(`no word from conmon within ${o.timeoutMs} ms${why ? `: ${why}` : ""}`));
    }, o.timeoutMs);

    child.on("error", (err) => finish(fail(`cannot start ${path}: ${err.message}`)));
    errStream.setEncoding("utf8");
    errStream.on("data", (d: string) => { stderr += d; });
    child.on("exit", (code) => { parentExit = code; });

    sync.setEncoding("utf8");
    sync.on("data", async (d: string) => {
      syncBuf += d;
      const nl = syncBuf.indexOf("\n");
      const text = (nl >= 0 ? syncBuf.slice(0, nl) : syncBuf).trim();
      let msg: { data?: number; message?: string };
      try {
        msg = JSON.parse(text) as typeof msg;
      } catch {
        return; // partial line, wait for more
      }
      if (reported) return;
      reported = true;
      if (typeof msg.data !== "number" || msg.data <= 0) {
        const why = msg.message?.trim() || (await runcLogErrors(o.runcLog)) || "runc create failed";
        finish(createFailed(why));
        return;
      }
      const conmonPid = await waitPidFile(o.conmonPidFile, 2000);
      if (!conmonPid) {
        finish(fail(`conmon did not write ${o.conmonPidFile}`));
        return;
      }
      finish(null, { pid: msg.data, conmonPid });
    });
    sync.on("end", async () => {
      if (settled || reported) return;
      // Let the parent's exit code and stderr arrive before reporting.
      await new Promise((r) => setTimeout(r, 20));
      const why = stderr.trim() || (await runcLogErrors(o.runcLog)) || "conmon exited without reporting the container";
      finish(fail(why, parentExit ?? undefined));
    });
  });
}

async function waitPidFile(file: string, timeoutMs: number): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pid = await readPid(file);
    if (pid || Date.now() > deadline) return pid;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** pid alive and not a zombie (our PID 1 may be slow, or never, to reap orphans). */
export async function processAlive(pid: number): Promise<boolean> {
  return (await processStart(pid)) !== null;
}

/** Guard against pid reuse: the process must be a conmon for this container id. */
export async function isConmonFor(pid: number, id: string): Promise<boolean> {
  const cmd = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const argv = cmd.split("\0");
  return argv.some((a) => a.endsWith("conmon")) && argv.includes(id) && (await processAlive(pid));
}
