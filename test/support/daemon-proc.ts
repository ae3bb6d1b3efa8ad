// A daemon in its own process (`bin/berth daemon`), for what an in-process daemon cannot show:
// kill -9, fault injection, the CLI as a user runs it.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, openSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import type { ClientConfig } from "../../src/config.js";
import { sweepDataRoot } from "./sweep.js";

export const BIN = resolve(__dirname, "../../bin/berth");
// bin/berth runs the CLI bundle, and `berth daemon` loads dist/daemon-main.js: both come from npm run build.
export const BUILT = existsSync(resolve(__dirname, "../../dist/cli/berth.cjs")) && existsSync(resolve(__dirname, "../../dist/daemon-main.js"));

export interface DaemonProc {
  dataRoot: string;
  node: string;
  natsPort: number;
  child: ChildProcess;
  client(): ClientConfig;
  /** Resolves when the process has exited (by itself, by a fault, or killed). */
  exited: Promise<void>;
}

export async function startDaemonProc(
  dataRoot: string,
  node: string,
  natsPort: number,
  env: Record<string, string> = {},
  /** More `berth daemon` flags (--nats-url, --subnet, …). */
  args: string[] = [],
): Promise<DaemonProc> {
  const clientJson = join(dataRoot, "client.json");
  await rm(clientJson, { force: true });
  // BERTH_TEST_LOG_DIR: each daemon's log (info and up) appended to <dir>/<node>.log, to read after a failure.
  const logDir = process.env.BERTH_TEST_LOG_DIR;
  const out = logDir ? openSync(join(logDir, `${node}.log`), "a") : "ignore";
  const child = spawn(
    process.execPath,
    [BIN, "daemon", "--data-root", dataRoot, "--node", node, "--nats-port", String(natsPort), "--http-listen", "127.0.0.1:0", ...args],
    { stdio: ["ignore", out, "pipe"], env: { ...process.env, BERTH_LOG_LEVEL: logDir ? "info" : "warn", ...env } },
  );
  if (typeof out === "number") closeSync(out);
  let stderr = "";
  child.stderr!.on("data", (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const end = Date.now() + 30_000;
  while (!existsSync(clientJson)) {
    if (Date.now() > end || child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`daemon did not come up (exit ${child.exitCode ?? child.signalCode}): ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    dataRoot,
    node,
    natsPort,
    child,
    exited,
    client: () => JSON.parse(readFileSync(clientJson, "utf8")) as ClientConfig,
  };
}

export function running(p: DaemonProc): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

export async function stopProc(p: DaemonProc, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!running(p)) return;
  p.child.kill(signal);
  await p.exited;
}

export async function natsOf(p: DaemonProc): Promise<NatsConnection> {
  const c = p.client();
  return connect({ servers: c.nats.servers, ...(c.nats.user ? { user: c.nats.user, pass: c.nats.pass } : {}) });
}

/**
 * One data root's daemon, started and stopped again and again (crash and retry tests): the
 * current process and a client's NATS connection to it.
 */
export class ProcSession {
  d: DaemonProc | null = null;
  nc: NatsConnection | null = null;
  /** Environment every daemon of the session gets (under what up() is given). */
  baseEnv: Record<string, string> = {};
  /** Flags every daemon of the session gets (an external NATS, a subnet). */
  baseArgs: string[] = [];

  constructor(
    readonly dataRoot: string,
    readonly node: string,
    readonly natsPort: number,
  ) {}

  async up(env: Record<string, string> = {}): Promise<void> {
    this.d = await startDaemonProc(this.dataRoot, this.node, this.natsPort, { ...this.baseEnv, ...env }, this.baseArgs);
    this.nc = await natsOf(this.d);
  }

  async down(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.nc?.close().catch(() => undefined);
    this.nc = null;
    if (this.d) await stopProc(this.d, signal);
  }

  /**
   * At the end of a suite: what its cases left (a failed case leaves containers) is removed
   * through a daemon of its own, as a user would, then the data root and socket dir go.
   */
  async destroy(): Promise<void> {
    await this.up();
    const { body } = await this.http<{ containers: { id: string }[] }>("/v1/containers?all=true");
    for (const c of body?.containers ?? []) await this.cmd("remove", { id: c.id, force: true });
    const { body: pods } = await this.http<{ pods: { id: string }[] }>("/v1/pods");
    for (const p of pods?.pods ?? []) await this.cmd("pod.remove", { id: p.id, force: true }, 120_000);
    await this.down();
    await sweepDataRoot(this.dataRoot, this.node);
  }

  /** Send a command the daemon is meant to die during (BERTH_FAULT): "died", or what it replied. */
  diesDuring(verb: string, body: unknown, timeoutMs = 60_000): Promise<string> {
    return Promise.race([
      this.cmd(verb, body, timeoutMs).then((r) => `replied ${JSON.stringify(r)}`, () => "no reply"),
      this.d!.exited.then(() => "died"),
    ]);
  }

  /**
   * After a daemon killed -9: a new one on the same data root, and container `id` once nothing is
   * pending on it any more (recovery finished what the dead one left), as GET /v1/containers/{id}.
   */
  async restartSettled<T extends { pending: string | null }>(id: string, timeoutMs: number, path = `/v1/containers/${id}`): Promise<T> {
    if (this.d!.child.signalCode !== "SIGKILL") throw new Error(`the daemon ended with ${this.d!.child.signalCode ?? this.d!.child.exitCode}, not SIGKILL`);
    await this.down();
    await this.up();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.http<T>(path);
      if (r.body?.pending === null) return r.body;
      if (Date.now() > deadline) throw new Error(`${path} still has ${r.body?.pending ?? `status ${r.status}`} pending after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** `berth.cmd.container.<verb>` as any client sends it (`pod.<verb>`, `image.<verb>` for theirs). */
  async cmd(verb: string, body: unknown, timeoutMs = 30_000): Promise<{ ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } }> {
    const subject = /^(pod|image)\./.test(verb) ? `berth.cmd.${verb}` : `berth.cmd.container.${verb}`;
    return (await this.nc!.request(subject, JSON.stringify(body), { timeout: timeoutMs })).json();
  }

  async http<T>(path: string): Promise<{ status: number; body: T }> {
    const c = this.d!.client();
    const r = await fetch(c.http.url + path, { headers: { authorization: `Bearer ${c.http.token}` } });
    return { status: r.status, body: (r.status === 200 ? await r.json() : await r.json().catch(() => null)) as T };
  }
}
