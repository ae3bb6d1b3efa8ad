// The embedded nats-server: JetStream with its store in the data root, loopback only, one user
// per role (nats-roles.ts) with passwords generated once. It runs in its own process group so that the daemon decides the
// order of shutdown; after a kill -9 of the daemon the old server is found by its pid file and
// reused (never two on one data root).
import { spawn } from "node:child_process";
import { openSync, closeSync, readFileSync, existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { join } from "node:path";
import { logger } from "../log.js";
import { authorizationText, type NatsCred } from "./nats-roles.js";

export interface EmbeddedNatsOptions {
  dir: string;
  port: number;
  /** The daemon's user. */
  user: string;
  pass: string;
  /** The client's and auditor's users; a server without them has the daemon's only (benches). */
  client?: NatsCred;
  auditor?: NatsCred;
  binary?: string;
  /** JetStream fsync policy; see docs/ARCHITECTURE.md for the measured cost. */
  syncInterval?: string;
}

export interface EmbeddedNats {
  url: string;
  /** The server's pid now (it changes when the watchdog restarts a server that died). */
  readonly pid: number;
  reused: boolean;
  stop(): Promise<void>;
}

const log = logger("runtime.nats");

export function natsServerBinary(): string {
  if (process.env.BERTH_NATS_SERVER) return process.env.BERTH_NATS_SERVER;
  for (const p of ["/usr/bin/nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server"]) {
    if (existsSync(p)) return p;
  }
  return "nats-server";
}

export function confText(o: EmbeddedNatsOptions): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    `listen: "127.0.0.1:${o.port}"`,
    `server_name: ${q(`berth_${o.port}`)}`,
    `pid_file: ${q(join(o.dir, "nats-server.pid"))}`,
    `max_payload: 1048576`,
    `jetstream {`,
    `  store_dir: ${q(join(o.dir, "store"))}`,
    ...(o.syncInterval ? [`  sync_interval: ${q(o.syncInterval)}`] : []),
    `}`,
    authorizationText({ daemon: { user: o.user, pass: o.pass }, client: o.client, auditor: o.auditor }),
    "",
  ].join("\n");
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pid in the pid file, if that process is a nats-server started with our config. */
function ourLiveServer(dir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dir, "nats-server.pid"), "utf8").trim());
    if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return null;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.includes(join(dir, "nats.conf")) ? pid : null;
  } catch {
    return null;
  }
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => {
      s.destroy();
      resolve(true);
    });
    s.on("error", () => resolve(false));
  });
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function stopPid(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  try {
    await waitFor(() => !pidAlive(pid), 10_000, `nats-server ${pid} to exit`);
  } catch {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}

/** Start (or reuse) the server, and keep it up: if it dies, start it again on the same store. */
export async function startEmbeddedNats(o: EmbeddedNatsOptions): Promise<EmbeddedNats> {
  await mkdir(join(o.dir, "store"), { recursive: true, mode: 0o700 });
  const url = `nats://127.0.0.1:${o.port}`;
  let current = await reuseOrLaunch(o, url);
  let stopping = false;
  let relaunching = false;
  const watchdog = setInterval(() => {
    if (stopping || relaunching || pidAlive(current.pid)) return;
    relaunching = true;
    log.warn({ pid: current.pid }, "embedded nats-server died; starting it again");
    launch(o)
      .then((pid) => {
        current = { pid, reused: false };
        log.info({ pid, url }, "embedded nats-server restarted");
      })
      .catch((err) => log.error({ err }, "could not restart the embedded nats-server; will retry"))
      .finally(() => (relaunching = false));
  }, WATCHDOG_MS);
  watchdog.unref();
  return {
    url,
    get pid() {
      return current.pid;
    },
    reused: current.reused,
    stop: async () => {
      stopping = true;
      clearInterval(watchdog);
      await stopPid(current.pid);
    },
  };
}

const WATCHDOG_MS = 250;

async function reuseOrLaunch(o: EmbeddedNatsOptions, url: string): Promise<{ pid: number; reused: boolean }> {
  const conf = join(o.dir, "nats.conf");
  const old = ourLiveServer(o.dir);
  if (old) {
    const same = existsSync(conf) && readFileSync(conf, "utf8") === confText(o);
    if (same && (await portOpen(o.port))) {
      log.info({ pid: old, url }, "reusing the nats-server left by an earlier daemon");
      return { pid: old, reused: true };
    }
    log.info({ pid: old }, "replacing the nats-server of an earlier daemon (config changed)");
    await stopPid(old);
  }
  const pid = await launch(o);
  log.info({ pid, url }, "embedded nats-server started");
  return { pid, reused: false };
}

async function launch(o: EmbeddedNatsOptions): Promise<number> {
  const conf = join(o.dir, "nats.conf");
  await writeFile(conf, confText(o), { mode: 0o600 });
  const out = openSync(join(o.dir, "nats-server.log"), "a", 0o600);
  const child = spawn(o.binary ?? natsServerBinary(), ["-c", conf], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  const pid = child.pid;
  if (!pid) throw new Error("could not start nats-server");
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? -1));
  child.unref();
  try {
    await waitFor(async () => {
      if (exited !== null) throw new Error(`nats-server exited with ${exited}; see ${join(o.dir, "nats-server.log")}`);
      // Our own pid in the pid file: the port is not held by some other server.
      return ourLiveServer(o.dir) === pid && (await portOpen(o.port));
    }, 15_000, `nats-server on port ${o.port}`);
  } catch (err) {
    if (exited === null) await stopPid(pid);
    throw err;
  }
  return pid;
}
