// runc, always with this data root's `--root`. Facts only: state, list; verbs that fail because
// the container is already gone say so by their return value instead of throwing.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { access, mkdir, readFile, rm } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { dirname, join } from "node:path";
import { invalid, RuntimeFailure } from "../shared/errors.js";
import { checkId } from "./paths.js";
import type { Logger } from "../log.js";
import { isNotExist, run, toolEnv, toolPaths } from "./exec.js";
import { killSession, pidNs, processStart } from "./session.js";
import type { RuncState } from "../shared/host-facts.js";
import type { ExecResult, ExecUser } from "../shared/host-facts.js";

const TIMEOUT_MS = 30_000;

interface RawState {
  id: string;
  status: RuncState["status"];
  pid: number;
  bundle: string;
  created: string;
}

const toState = (s: RawState): RuncState => ({
  id: s.id,
  status: s.status,
  pid: s.pid,
  bundle: s.bundle,
  created: s.created,
});

export type { ExecResult, ExecUser } from "../shared/host-facts.js";

export interface ExecOptions {
  timeoutMs: number;
  /** Aborting ends the process as a timeout does (daemon shutdown). */
  signal?: AbortSignal;
  /** Where runc writes the exec'd pid; a fresh file in the OS temp dir when not given. */
  pidFile?: string;
  /** Added to the container's own environment (KEY=VALUE). */
  env?: readonly string[];
  /** Replaces the container's user; its own when not given. */
  user?: ExecUser;
  /** Replaces the container's working directory. */
  cwd?: string;
  /** Bytes kept of each of stdout and stderr; EXEC_OUTPUT_MAX when not given. */
  maxOutput?: number;
}

/** Docker keeps 4 KiB of a probe's output; so do we. */
export const EXEC_OUTPUT_MAX = 4096;
/** A background child of the exec'd process can keep the pipes open: read this long after it exits. */
const EXEC_DRAIN_MS = 100;

/** Output kept up to `max` bytes; the rest is counted as cut, not stored. */
class Bounded {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  cut = false;
  constructor(private readonly max: number) {}
  take = (b: Buffer) => {
    const room = this.max - this.size;
    if (b.length > room) this.cut = true;
    if (room <= 0) return;
    const part = b.subarray(0, room);
    this.chunks.push(part);
    this.size += part.length;
  };
  text(): string {
    return Buffer.concat(this.chunks).toString("utf8");
  }
}

export interface RuncOptions {
  root: string;
  runcPath?: string;
  log: Logger;
}

export class Runc {
  readonly root: string;
  readonly path: string;
  private readonly log: Logger;

  constructor(opts: RuncOptions) {
    this.root = opts.root;
    this.path = opts.runcPath ?? toolPaths.runc;
    this.log = opts.log;
  }

  /** Global flags conmon must pass to runc too, so both talk about the same containers. */
  get globalArgs(): string[] {
    return [`--root=${this.root}`];
  }

  private run(args: string[]) {
    return run(this.path, [...this.globalArgs, ...args], { timeoutMs: TIMEOUT_MS, log: this.log, toolName: "runc" });
  }

  /**
   * runc keeps each container's state in `<root>/<id>/` from create until delete. No dir, no
   * container: answering that without exec'ing runc saves ~10 ms per fresh start and cleanup.
   */
  private async known(id: string): Promise<boolean> {
    return access(join(this.root, checkId(id))).then(() => true, () => false);
  }

  /**
   * Whether runc's container still has a live init process, from its state.json and /proc, the
   * way runc itself decides (pid and process start time) — without exec'ing runc. `gone`: runc
   * does not know the id; `stopped`: known, its process is gone; `live`: ask `state()` for more.
   */
  async liveness(id: string): Promise<"gone" | "stopped" | "live"> {
    let st: { init_process_pid?: number; init_process_start?: number | string };
    try {
      st = JSON.parse(await readFile(join(this.root, checkId(id), "state.json"), "utf8"));
    } catch {
      return (await this.known(id)) ? "live" : "gone"; // mid-create or unreadable: let runc say
    }
    const pid = st.init_process_pid;
    if (!pid) return "stopped";
    return (await processStart(pid)) === String(st.init_process_start) ? "live" : "stopped";
  }

  async state(id: string): Promise<RuncState | null> {
    if (!(await this.known(id))) return null;
    try {
      const { stdout } = await this.run(["state", id]);
      return toState(JSON.parse(stdout) as RawState);
    } catch (err) {
      if (isNotExist(err)) return null;
      throw err;
    }
  }

  async list(): Promise<RuncState[]> {
    const { stdout } = await this.run(["list", "--format", "json"]);
    // runc prints `null` for an empty root.
    const arr = (JSON.parse(stdout || "null") as RawState[] | null) ?? [];
    return arr.map(toState);
  }

  async start(id: string): Promise<void> {
    await this.run(["start", id]);
  }

  /** false when there was nothing to signal (gone, or not running any more). */
  async kill(id: string, signal: string | number, all = false): Promise<boolean> {
    if (!(await this.known(id))) return false;
    try {
      await this.run(["kill", ...(all ? ["--all"] : []), id, String(signal)]);
      return true;
    } catch (err) {
      if (isNotExist(err) || (err instanceof RuntimeFailure && /not running|process already finished/i.test(err.stderr))) {
        return false;
      }
      throw err;
    }
  }

  async pause(id: string): Promise<void> {
    await this.run(["pause", id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(["resume", id]);
  }

  /**
   * runc's `exec` arguments (global flags included) for `argv` with these process settings;
   * the one place both the piped and the terminal exec build them.
   */
  execArgs(id: string, argv: readonly string[], o: { pidFile: string; tty?: boolean; env?: readonly string[]; user?: ExecUser; cwd?: string }): string[] {
    checkId(id);
    if (argv.length === 0) throw invalid("exec needs a command");
    const args = [...this.globalArgs, "exec", "--pid-file", o.pidFile];
    if (o.tty) args.push("--tty");
    for (const e of o.env ?? []) args.push("--env", e);
    if (o.user) {
      args.push("--user", `${o.user.uid}:${o.user.gid}`);
      for (const g of o.user.additionalGids ?? []) args.push("--additional-gids", String(g));
    }
    if (o.cwd) args.push("--cwd", o.cwd);
    // runc stops parsing its flags at the container id (its exec skips argument reordering), so
    // an argv starting with `-` is the command's; a `--` here would become the program's name.
    return [...args, id, ...argv];
  }

  private execDir: Promise<string> | null = null;

  /**
   * A fresh pid file path for one exec, beside the runc root (`<data root>/exec/`): one left by a
   * daemon that died during an exec goes with its data root, not into /tmp.
   */
  async pidFile(): Promise<string> {
    this.execDir ??= (async () => {
      const dir = join(dirname(this.root), "exec");
      await mkdir(dir, { recursive: true, mode: 0o700 });
      return dir;
    })();
    return join(await this.execDir, `${randomBytes(8).toString("hex")}.pid`);
  }

  /**
   * `runc exec` without a tty: run `argv` in the running container with its process settings
   * (env, user, cwd, unless overridden) and report the exit code and the output of each stream,
   * bounded. A non-zero exit is a result, not an error; only failing to spawn runc throws. runc
   * runs in its own process group and the exec'd process leads its own session, so on timeout
   * the whole session is killed, then runc: nothing the command started outlives it.
   */
  async exec(id: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> {
    const pidFile = opts.pidFile ?? (await this.pidFile());
    const args = this.execArgs(id, argv, { pidFile, env: opts.env, user: opts.user, cwd: opts.cwd });
    const child = spawn(this.path, args, { stdio: ["ignore", "pipe", "pipe"], detached: true, env: toolEnv() });
    const max = opts.maxOutput ?? EXEC_OUTPUT_MAX;
    const out = new Bounded(max);
    const err = new Bounded(max);
    child.stdout.on("data", out.take);
    child.stderr.on("data", err.take);

    let timedOut = false;
    let killing: Promise<void> | null = null;
    const expire = () => {
      timedOut = true;
      killing ??= this.killExec(id, child.pid, pidFile);
    };
    const timer = setTimeout(expire, opts.timeoutMs);
    if (opts.signal?.aborted) expire();
    opts.signal?.addEventListener("abort", expire, { once: true });
    const t0 = performance.now();
    try {
      const end = await new Promise<{ code: number | null; sig: NodeJS.Signals | null } | { error: Error }>((resolve) => {
        child.once("error", (error) => resolve({ error }));
        child.once("exit", (code, sig) => resolve({ code, sig }));
      });
      clearTimeout(timer);
      if ("error" in end) {
        throw new RuntimeFailure("runc", ["exec", id], (end.error as NodeJS.ErrnoException).code === "ENOENT" ? `${this.path}: not found` : end.error.message, undefined, { cause: end.error });
      }
      await new Promise<void>((resolve) => {
        if (child.stdout.readableEnded && child.stderr.readableEnded) return resolve();
        const t = setTimeout(resolve, EXEC_DRAIN_MS);
        child.once("close", () => (clearTimeout(t), resolve()));
      });
      // runc may have died before its pid file was read: look once more.
      if (timedOut) await (killing ?? Promise.resolve()).then(() => this.killExec(id, null, pidFile));
      const exitCode = timedOut ? -1 : end.code ?? 128 + (end.sig ? osConstants.signals[end.sig] : 0);
      this.log.trace({ tool: "runc", id, argv, ms: Math.round(performance.now() - t0), exitCode, timedOut }, "exec ran");
      return { exitCode, stdout: out.text(), stderr: err.text(), truncated: out.cut || err.cut, timedOut };
    } finally {
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", expire);
      child.stdout.destroy();
      child.stderr.destroy();
      await rm(pidFile, { force: true });
    }
  }

  /**
   * The exec'd session first (runc only copies its output and reaps), then runc's own group. The
   * container's pid namespace tells the command's processes from anyone else's.
   */
  async killExec(id: string, runcPid: number | null | undefined, pidFile: string): Promise<void> {
    const leader = Number.parseInt(await readFile(pidFile, "utf8").catch(() => ""), 10);
    if (Number.isInteger(leader)) {
      // The container's init names the namespace; without it, nothing of the container lives.
      const init = await this.state(id).catch(() => null);
      const ns = init?.pid ? await pidNs(init.pid) : null;
      if (ns) await killSession(leader, ns);
    }
    if (runcPid) {
      try {
        process.kill(-runcPid, "SIGKILL");
      } catch {
        /* runc exited with its process */
      }
    }
  }

  /** Idempotent: a container that does not exist is already deleted. */
  async delete(id: string, force = false): Promise<void> {
    if (!(await this.known(id))) return;
    try {
      await this.run(["delete", ...(force ? ["--force"] : []), id]);
    } catch (err) {
      if (isNotExist(err)) return;
      throw err;
    }
  }
}
