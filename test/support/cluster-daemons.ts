// Several berth daemons on one real nats-server cluster (test/support/nats-cluster.ts), each in its
// own process with its own data root, node name and subnet: what the multi-node suites share.
// A client connection to the cluster sends commands through the daemons' queue group, or to one
// daemon itself on the subject daemons hand commands over on (`berth.fwd.<node>.<verb>`).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Paths } from "../../src/runtime/paths.js";
import { ProcSession } from "./daemon-proc.js";
import { startNatsCluster, type TestNatsCluster } from "./nats-cluster.js";
import { freePort } from "./nats.js";

export type Reply = { ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } };

export interface ClusterDaemons {
  cluster: TestNatsCluster;
  nc: NatsConnection;
  sessions: ProcSession[];
  /** A command (`container.run`, `pod.create`, …; a bare verb is a container's), via one node's daemon or the queue group. */
  cmd(verb: string, body: unknown, timeoutMs?: number, via?: string): Promise<Reply>;
  /** Every daemon up, every container removed by its owner, every daemon and server stopped, every dir gone. */
  stop(): Promise<void>;
}

/**
 * Daemons named `names`, each on a /24 it chooses itself (a free one: suites running beside this
 * one claim theirs, and a fixed or random choice could collide with them).
 */
export async function startClusterDaemons(names: string[]): Promise<ClusterDaemons> {
  const cluster = await startNatsCluster();
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
      for (const c of body?.containers ?? []) await step(cmd("remove", { id: c.id, force: true }, 60_000, c.node));
    }
    await step(nc?.close() ?? Promise.resolve());
    for (const s of sessions) {
      await step(s.down());
      await step(rm(s.dataRoot, { recursive: true, force: true }));
      await step(rm(new Paths(s.dataRoot).socketDir, { recursive: true, force: true }));
    }
    await step(cluster.stop());
  };
  try {
    for (const node of names) {
      const s = new ProcSession(await mkdtemp(join(tmpdir(), `berth-${node}-`)), node, await freePort());
      s.baseArgs = ["--nats-url", cluster.url];
      sessions.push(s);
      await s.up();
    }
    nc = await connect({ servers: cluster.urls });
  } catch (err) {
    await stop();
    throw err;
  }
  return { cluster, nc, sessions, cmd, stop };
}
