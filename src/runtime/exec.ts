// The one way runtime adapters run a host tool: bounded in time, stderr kept verbatim, failures
// turned into RuntimeFailure so the reply carries the tool's own words.
import { access, constants } from "node:fs/promises";
import { execa } from "execa";
import { RuntimeFailure } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { spawnViaHelper, spawnerEnabled, type SpawnResult } from "./spawner.js";

/** Where each tool lives; BERTH_<TOOL>_PATH overrides (tests, odd installs). */
export const toolPaths = {
  runc: process.env.BERTH_RUNC_PATH ?? "runc",
  conmon: process.env.BERTH_CONMON_PATH ?? "conmon",
  skopeo: process.env.BERTH_SKOPEO_PATH ?? "skopeo",
  umoci: process.env.BERTH_UMOCI_PATH ?? "umoci",
  mount: process.env.BERTH_MOUNT_PATH ?? "mount",
  umount: process.env.BERTH_UMOUNT_PATH ?? "umount",
  tar: process.env.BERTH_TAR_PATH ?? "tar",
  unshare: process.env.BERTH_UNSHARE_PATH ?? "unshare",
  openssl: process.env.BERTH_OPENSSL_PATH ?? "openssl",
};

export interface RunOptions {
  timeoutMs: number;
  input?: string;
  log?: Logger;
  cwd?: string;
  /** The name put into RuntimeFailure when `tool` is a path (e.g. "runc" for /usr/sbin/runc). */
  toolName?: string;
  /** Added to the tool's own environment (CNI plugins take their arguments there). */
  env?: Record<string, string>;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** A tool's own environment: no daemon secrets leak into runc, conmon or the container. */
export function toolEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    LANG: "C",
    ...extra,
  };
}

export async function run(tool: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  if (spawnerEnabled()) {
    const res = await spawnViaHelper({ file: tool, args, env: toolEnv(opts.env), cwd: opts.cwd, input: opts.input, timeoutMs: opts.timeoutMs }).catch(
      () => null, // the helper is gone: run the tool directly this once
    );
    if (res) return fromHelper(tool, args, opts, res);
  }
  return runDirect(tool, args, opts);
}

const chomp = (s: string) => (s.endsWith("\n") ? s.slice(0, -1) : s);

function fromHelper(tool: string, args: readonly string[], opts: RunOptions, res: SpawnResult): RunResult {
  const name = opts.toolName ?? tool.split("/").pop() ?? tool;
  const stdout = chomp(res.stdout);
  const stderr = chomp(res.stderr);
  if (res.error || res.timedOut || res.exitCode !== 0) {
    const why = res.timedOut
      ? `timed out after ${opts.timeoutMs} ms${stderr ? `: ${stderr}` : ""}`
      : stderr || stdout || (res.error === "ENOENT" ? `${tool}: not found` : res.error ?? `killed by ${res.signal ?? "a signal"}`);
    opts.log?.debug({ tool: name, args, exitCode: res.exitCode, stderr: why }, "tool failed");
    throw new RuntimeFailure(name, args, why, res.exitCode ?? undefined);
  }
  return { stdout, stderr };
}

async function runDirect(tool: string, args: readonly string[], opts: RunOptions): Promise<RunResult> {
  const name = opts.toolName ?? tool.split("/").pop() ?? tool;
  const t0 = performance.now();
  const res = await execa(tool, args, {
    timeout: opts.timeoutMs,
    forceKillAfterDelay: 2000,
    input: opts.input,
    stdin: opts.input === undefined ? "ignore" : undefined,
    cwd: opts.cwd,
    env: toolEnv(opts.env),
    extendEnv: false,
    reject: false,
    stripFinalNewline: true,
    encoding: "utf8",
  });
  const ms = Math.round(performance.now() - t0);
  const stderr = String(res.stderr ?? "");
  const stdout = String(res.stdout ?? "");
  if (res.failed) {
    const why = res.timedOut
      ? `timed out after ${opts.timeoutMs} ms${stderr ? `: ${stderr}` : ""}`
      : stderr || stdout || (res.code === "ENOENT" ? `${tool}: not found` : res.shortMessage ?? "failed");
    opts.log?.debug({ tool: name, args, ms, exitCode: res.exitCode, stderr: why }, "tool failed");
    throw new RuntimeFailure(name, args, why, res.exitCode, { cause: res.cause ?? undefined });
  }
  opts.log?.trace({ tool: name, args, ms }, "tool ran");
  return { stdout, stderr };
}

/** A tool's absolute path (conmon execs its runtime without a PATH search). */
export async function resolveTool(tool: string): Promise<string> {
  if (tool.includes("/")) return tool;
  const dirs = (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":");
  for (const dir of [...dirs, "/usr/sbin", "/sbin"]) {
    const p = `${dir}/${tool}`;
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  throw new RuntimeFailure(tool, [], `${tool}: not found in PATH`, undefined);
}

/** runc and friends say "does not exist" in a few ways; idempotent callers treat them as gone. */
export function isNotExist(err: unknown): boolean {
  return err instanceof RuntimeFailure && /does not exist|not exist|no such file|not found/i.test(err.stderr);
}
