// Several berth daemons on one real nats-server cluster (test/support/nats-cluster.ts), each in its
// own process with its own data root, node name and subnet: what the multi-node suites share.
// A client connection to the cluster sends commands through the daemons' queue group, or to one
// daemon itself on the subject daemons hand commands over on (`berth.fwd.<node>.<verb>`).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { clusterAuthorizationText } from "../../src/runtime/nats-roles.js";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { ProcSession } from "./daemon-proc.js";
import { sweepDataRoot } from "./sweep.js";
import { startNatsCluster, type TestNatsCluster } from "./nats-cluster.js";
import { freePort } from "./nats.js";

export type Reply = { ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } };

export interface ClusterDaemons {
  cluster: TestNatsCluster;
  nc: NatsConnection;
  sessions: ProcSession[];
  /** A command (`container.run`, `pod.create`, …; a bare verb is a container's), via one node's daemon or the queue group. */
  cmd(verb: string, body: unknown, timeoutMs?: number, via?: string): Promise<Reply>;
  /** The users, when started with credentials. */
  creds: { nodes: Record<string, { user: string; pass: string }>; client: { user: string; pass: string }; admin: { user: string; pass: string } } | null;
  /** Every daemon up, every container removed by its owner, every daemon and server stopped, every dir gone. */
  stop(): Promise<void>;
}

/**
 * Daemons named `names`, each on a /24 it chooses itself (a free one: suites running beside this
 * one claim theirs, and a fixed or random choice could collide with them).
 */
export async function startClusterDaemons(names: string[], opts: { credentials?: boolean } = {}): Promise<ClusterDaemons> {
  // With credentials: each daemon its own NATS user (nodeDaemonPermissions), the test a client's.
  const pass = () => randomBytes(18).toString("base64url");
  const creds = opts.credentials
    ? { nodes: Object.fromEntries(names.map((n) => [n, { user: `berth-${n}`, pass: pass() }])), client: { user: "berth-client-test", pass: pass() }, admin: { user: "harness", pass: pass() } }
    : null;
  const cluster = await startNatsCluster(creds ? { auth: { text: clusterAuthorizationText({ nodes: creds.nodes, clients: [creds.client], admins: [creds.admin] }), admin: creds.admin } } : {});
  const sessions: ProcSession[] = [];
  let nc: NatsConnection | null = null;
  const cmd = async (verb: string, body: unknown, timeoutMs = 60_000, via?: string): Promise<Reply> => {
    const full = /^(pod|image|checkpoint|container)\./.test(verb) ? verb : `container.${verb}`;
    return (await nc!.request(via ? `berth.fwd.${via}.${full}` : `berth.cmd.${full}`, JSON.stringify(body), { timeout: timeoutMs })).json();
  };
  const stop = async () => {
    // Each step on its own: whatever fails, the daemons and the cluster are stopped.
    const step = (p: Promise<unknown>) => p.catch((err) => console.error("cluster daemons cleanup:", err));
    for (const s of sessions) if (!s.d || s.d.child.exitCode !== null || s.d.child.signalCode !== null) await step(s.up());
    if (nc && sessions[0]?.d) {
      const { body } = await sessions[0].http<{ containers: { id: string; node: string }[] }>("/v1/containers?all=true").catch(() => ({ body: null }));
      // A client with its own user may not use the daemons' subject (berth.fwd): through the queue group then.
      for (const c of body?.containers ?? []) await step(cmd("remove", { id: c.id, force: true }, 60_000, creds ? undefined : c.node));
    }
    await step(nc?.close() ?? Promise.resolve());
    for (const s of sessions) {
      await step(s.down());
      await step(sweepDataRoot(s.dataRoot, s.node));
    }
    await step(cluster.stop());
  };
  try {
    for (const node of names) {
      const s = new ProcSession(await mkdtemp(join(tmpdir(), `berth-${node}-`)), node, await freePort());
      // The user and password in the first URL, as an operator writes them (the daemon takes them out).
      s.baseArgs = ["--nats-url", creds ? cluster.url.replace("nats://", `nats://${creds.nodes[node].user}:${creds.nodes[node].pass}@`) : cluster.url];
      // client.json (the session's own connection, as this host's CLI) logs in as the client.
      if (creds) s.baseArgs.push("--client-user", `${creds.client.user}:${creds.client.pass}`);
      sessions.push(s);
      await s.up();
    }
    nc = await connect({ servers: cluster.urls, ...(creds?.client ?? {}) });
  } catch (err) {
    await stop();
    throw err;
  }
  return { cluster, nc, sessions, cmd, stop, creds };
}

/** What a node's host still has of container `id`: its dir, mounts under its data root, its runc state. */
export function leftOn(s: ProcSession, id: string): { dir: boolean; mounts: string[]; runc: boolean } {
  const mounts = readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(s.dataRoot) && l.includes(id));
  return { dir: existsSync(join(s.dataRoot, "containers", id)), mounts, runc: existsSync(join(s.dataRoot, "runc", id)) };
}

export const NOTHING_LEFT = { dir: false, mounts: [], runc: false };

/**
 * What is left of `id` on that node once its clean-up has had `ms` to end (it ends with the
 * sandbox, after the container's dir): the caller expects NOTHING_LEFT.
 */
export async function leftAfterCleanup(s: ProcSession, id: string, ms = 15_000): Promise<ReturnType<typeof leftOn>> {
  const end = Date.now() + ms;
  for (;;) {
    const l = leftOn(s, id);
    if ((!l.dir && !l.mounts.length && !l.runc) || Date.now() > end) return l;
    await new Promise((r) => setTimeout(r, 100));
  }
}
