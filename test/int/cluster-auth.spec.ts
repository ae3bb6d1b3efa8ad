// Each daemon and each client its own NATS user on a shared cluster (issue 10, story 7): a real
// 3-server cluster whose config has one daemon user per node (nodeDaemonPermissions), a client
// user and an operator's. The daemons work as on an open cluster; a node's user cannot take
// another node's forwarded commands or read its inbox, write another node's heartbeat or
// snapshot, or delete the log; the client still can only send commands.
import { randomBytes } from "node:crypto";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, type ProcSession } from "../support/daemon-proc.js";
import { startClusterDaemons, type ClusterDaemons } from "../support/cluster-daemons.js";
import { IN_CI, missing } from "../support/prereq.js";
import { DAEMON_INBOX_PREFIX, daemonInboxPrefix } from "../../src/runtime/nats-roles.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

const refused = (subject: string, op = "Publish") => new RegExp(`Permissions Violation for ${op} to "${subject.replace(/[$.>*]/g, "\\$&")}"`);
type Node = { name: string; up: boolean };

describe.skipIf(skip)("per-node NATS credentials on a cluster", () => {
  let h: ClusterDaemons;
  let sessions: ProcSession[];
  let asN1: NatsConnection;
  const suffix = randomBytes(2).toString("hex");
  const names = [`a1x${suffix}`, `a2x${suffix}`];

  beforeAll(async () => {
    h = await startClusterDaemons(names, { credentials: true });
    sessions = h.sessions;
    // As n1's daemon connects: its user, its inbox.
    asN1 = await connect({ servers: h.cluster.urls, ...h.creds!.nodes[names[0]], inboxPrefix: daemonInboxPrefix(names[0]) });
  }, 120_000);
  afterAll(async () => {
    await asN1?.close();
    await h?.stop();
  }, 180_000);

  it("the daemons work with their own users: a run on n2 and execs in it (handed to n2 by whichever took them), both up", async () => {
    // A client's user may send only on berth.cmd.> (the queue group), so whichever daemon takes it.
    const run = await h.cmd("run", { name: `auth-${suffix}`, image: "busybox", cmd: ["sleep", "1000"], node: names[1], network: { mode: "none" } });
    expect(run.error).toBeUndefined();
    const id = run.result!.id as string;
    for (let i = 0; i < 4; i++) expect((await h.cmd("exec", { id, cmd: ["echo", "hi"] }, 30_000)).result).toMatchObject({ exitCode: 0, stdout: "hi\n" });
    const ex = await h.cmd("exec", { id, cmd: ["echo", "hi"] }, 30_000);
    expect(ex.result).toMatchObject({ exitCode: 0, stdout: "hi\n" });
    for (const s of sessions) {
      const { body } = await s.http<{ nodes: Node[] }>("/v1/nodes");
      for (const n of names) expect(body.nodes.find((x) => x.name === n)?.up, `${s.node} sees ${n}`).toBe(true);
    }
    // client.json gives this host's CLI the client user (--client-user), and only that one.
    const cj = sessions[0].d!.client();
    expect(cj.nats).toMatchObject({ user: h.creds!.client.user, pass: h.creds!.client.pass });
    expect(JSON.stringify(cj)).not.toContain(h.creds!.nodes[names[0]].pass);
    expect((await h.cmd("remove", { id, force: true })).error).toBeUndefined();
  });

  it("a node's user cannot take another node's commands or replies", async () => {
    for (const subject of [`berth.fwd.${names[1]}.>`, `${DAEMON_INBOX_PREFIX}.${names[1]}.>`, `${DAEMON_INBOX_PREFIX}.>`]) {
      const sub = asN1.subscribe(subject);
      expect(String(await sub.closed), subject).toMatch(refused(subject, "Subscription"));
    }
    // Its own it may.
    const own = asN1.subscribe(`berth.fwd.${names[0]}.probe`);
    await asN1.flush();
    expect(own.isClosed()).toBe(false);
    own.unsubscribe();
  });

  it("a node's user cannot write another node's heartbeat or snapshot, nor delete the log or purge the heartbeats", async () => {
    const js = jetstream(asN1);
    for (const subject of [`$KV.berth_nodes.${names[1]}`, `$KV.berth_snapshots.${names[1]}`, `$KV.berth_snapshots.${names[1]}.a.0`]) {
      await expect(js.publish(subject, "{}", { timeout: 5_000 }), subject).rejects.toThrow(refused(subject));
    }
    for (const subject of ["$JS.API.STREAM.DELETE.BERTH_EVENTS", "$JS.API.STREAM.DELETE.KV_berth_nodes", "$JS.API.STREAM.PURGE.KV_berth_nodes"]) {
      await expect(asN1.request(subject, "{}", { timeout: 5_000 }), subject).rejects.toThrow(refused(subject));
    }
    // Its own heartbeat it writes (the daemon does, every few seconds).
    const kv = await new Kvm(asN1).open("berth_nodes");
    expect((await kv.get(names[0]))?.operation).toBe("PUT");
    expect((await jetstreamManager(asN1).then((m) => m.streams.info("BERTH_EVENTS"))).config.name).toBe("BERTH_EVENTS");
  });

  it("the client's user sends commands and nothing else", async () => {
    const js = jetstream(h.nc);
    await expect(js.publish(`berth.ev.container.${"f".repeat(64)}`, "{}", { timeout: 5_000 })).rejects.toThrow(refused(`berth.ev.container.${"f".repeat(64)}`));
    const sub = h.nc.subscribe(`berth.fwd.${names[0]}.>`);
    expect(String(await sub.closed)).toMatch(refused(`berth.fwd.${names[0]}.>`, "Subscription"));
    const r = await h.cmd("kill", { id: "no-such" });
    expect(r.error?.code).toBe("NotFound");
  });
});
