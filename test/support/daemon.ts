// A real daemon in the test process: its own data root, node name, NATS and HTTP ports. Talks to
// it the way any client does: client.json, NATS request/reply, HTTP with the bearer token.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { sweepDataRoot } from "./sweep.js";
import { startDaemon, type Daemon } from "../../src/daemon.js";
import { DEFAULT_SEED_IMAGE, type ClientConfig } from "../../src/config.js";
import { freePort } from "./nats.js";

export interface Reply<T = Record<string, unknown>> {
  ok: boolean;
  result?: T;
  error?: { code: string; message: string };
}

export interface TestDaemon {
  daemon: Daemon;
  dataRoot: string;
  node: string;
  client: ClientConfig;
  nc: NatsConnection;
  cmd<T = Record<string, unknown>>(verb: string, body: unknown, timeoutMs?: number): Promise<Reply<T>>;
  raw(verb: string, data: Uint8Array | string): Promise<Reply>;
  http(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  get<T = Record<string, unknown>>(path: string): Promise<T>;
  /** Stop the daemon (containers keep running) without removing anything. */
  stop(): Promise<void>;
  /** Remove every container through the API, stop, delete the data root. */
  destroy(): Promise<void>;
}

export async function startTestDaemon(
  opts: { dataRoot?: string; node?: string; natsPort?: number; natsUrl?: string; subnet?: string; offlineAfterSec?: number; checkpointGraceSec?: number } = {},
): Promise<TestDaemon> {
  const dataRoot = opts.dataRoot ?? (await mkdtemp(join(tmpdir(), "berth-d-")));
  const node = opts.node ?? `t${randomBytes(4).toString("hex")}`;
  const daemon = await startDaemon({
    dataRoot,
    node,
    natsPort: opts.natsPort ?? (await freePort()),
    natsUrl: opts.natsUrl,
    httpListen: "127.0.0.1:0",
    seedImage: process.env.BERTH_SEED_IMAGE ?? DEFAULT_SEED_IMAGE,
    subnet: opts.subnet,
    offlineAfterSec: opts.offlineAfterSec,
    checkpointGraceSec: opts.checkpointGraceSec,
  });
  const client = JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
  const nc = await connect({ servers: client.nats.servers, user: client.nats.user, pass: client.nats.pass, maxReconnectAttempts: -1 });
  const enc = new TextEncoder();
  const raw = async (verb: string, data: Uint8Array | string, timeoutMs = 35_000): Promise<Reply> => {
    const m = await nc.request(`berth.cmd.${verb}`, typeof data === "string" ? enc.encode(data) : data, { timeout: timeoutMs });
    return m.json<Reply>();
  };
  const http = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const { token, ...rest } = init;
    const headers = new Headers(rest.headers);
    const t = token === undefined ? client.http.token : token;
    if (t !== null) headers.set("authorization", `Bearer ${t}`);
    return fetch(client.http.url + path, { ...rest, headers });
  };
  let stopped = false;
  const td: TestDaemon = {
    daemon,
    dataRoot,
    node,
    client,
    nc,
    cmd: (verb, body, timeoutMs) => raw(verb, JSON.stringify(body), timeoutMs) as never,
    raw,
    http,
    async get(path) {
      const r = await http(path);
      if (!r.ok) throw new Error(`GET ${path}: ${r.status} ${await r.text()}`);
      return r.json() as never;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await nc.close().catch(() => undefined);
      await daemon.stop();
    },
    async destroy() {
      if (!stopped) {
        // Pods first: their sandboxes (pinned namespaces, bridge attachment) go with them.
        const { pods } = await td.get<{ pods: { id: string }[] }>("/v1/pods").catch(() => ({ pods: [] as { id: string }[] }));
        for (const p of pods) await td.cmd("pod.remove", { id: p.id, force: true }, 30_000).catch(() => null);
        const { containers } = await td.get<{ containers: { id: string }[] }>("/v1/containers?all=true");
        for (const c of containers) {
          // A client that just reconnected (outage tests) may lose its first request: retry.
          for (let i = 0; i < 3; i++) {
            const r = await td.cmd("container.remove", { id: c.id, force: true }, 10_000).catch(() => null);
            if (r) break;
          }
        }
        await td.stop();
      }
      // What the daemon left (a case that failed half-way), then the data root and conmon's socket dir under /run.
      await sweepDataRoot(dataRoot, node);
    },
  };
  return td;
}
