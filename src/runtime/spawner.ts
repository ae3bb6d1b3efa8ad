// Host tools are started by a small long-lived helper process instead of the daemon itself.
// Starting a process forks the one that starts it, and a fork costs in proportion to that
// process's memory: ~4.9 ms of CPU from a 230 MB daemon, ~1.3 ms from a 70 MB helper (measured
// here). With 100 crash-looping containers that difference is most of the daemon's CPU.
// The helper only runs a program and reports its exit code and output; every decision stays in
// the daemon. If it dies, the next call starts a new one; BERTH_SPAWNER=off runs tools directly.
import { spawn, type ChildProcess } from "node:child_process";

export interface SpawnRequest {
  file: string;
  args: readonly string[];
  env: Record<string, string>;
  cwd?: string;
  input?: string;
  timeoutMs: number;
}

export interface SpawnResult {
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  error?: string;
}

// The helper's whole program: plain CommonJS, so it needs no build step and no module lookup.
const HELPER = String.raw`
const { spawn } = require("node:child_process");
const MAX = 16 * 1024 * 1024;
process.on("disconnect", () => process.exit(0));
process.on("message", (m) => {
  let out = "", err = "", done = false, timedOut = false;
  const finish = (r) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    process.send({ id: m.id, stdout: out, stderr: err, timedOut, exitCode: null, signal: null, ...r });
  };
  let child;
  try {
    child = spawn(m.file, m.args, { cwd: m.cwd, env: m.env, stdio: [m.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
  } catch (e) {
    return finish({ error: e.code || e.message });
  }
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM");
    setTimeout(() => child.kill("SIGKILL"), 2000).unref();
  }, m.timeoutMs);
  child.stdout.setEncoding("utf8").on("data", (d) => { if (out.length < MAX) out += d; });
  child.stderr.setEncoding("utf8").on("data", (d) => { if (err.length < MAX) err += d; });
  child.on("error", (e) => finish({ error: e.code || e.message }));
  child.on("close", (code, signal) => finish({ exitCode: code, signal }));
  if (m.input !== undefined) child.stdin.end(m.input);
});
`;

let helper: ChildProcess | null = null;
let nextId = 0;
const pending = new Map<number, { resolve: (r: SpawnResult) => void; reject: (e: Error) => void }>();

function ensureHelper(): ChildProcess {
  if (helper?.connected) return helper;
  const h = spawn(process.execPath, ["--max-old-space-size=64", "-e", HELPER], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: { PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  h.on("message", (r: SpawnResult & { id: number }) => {
    const p = pending.get(r.id);
    if (!p) return;
    pending.delete(r.id);
    p.resolve(r);
  });
  const gone = () => {
    if (helper === h) helper = null;
    for (const p of pending.values()) p.reject(new Error("the tool helper process exited"));
    pending.clear();
  };
  h.on("exit", gone);
  h.on("error", gone);
  // The helper must never keep a finished daemon (or test) alive; it exits when we do.
  h.unref();
  h.channel?.unref();
  helper = h;
  return h;
}

export const spawnerEnabled = () => process.env.BERTH_SPAWNER !== "off";

/** Run a program through the helper; resolves with its exit status and output. */
export function spawnViaHelper(req: SpawnRequest): Promise<SpawnResult> {
  const h = ensureHelper();
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    // While a request is out, the channel must keep the process alive to hear the answer.
    h.channel?.ref();
    const release = () => {
      if (pending.size === 0) h.channel?.unref();
    };
    h.send({ ...req, id }, (err) => {
      if (err) {
        pending.delete(id);
        release();
        reject(err);
      }
    });
    const p = pending.get(id)!;
    pending.set(id, {
      resolve: (r) => (p.resolve(r), release()),
      reject: (e) => (p.reject(e), release()),
    });
  });
}
