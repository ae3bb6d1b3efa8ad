// Roles on NATS against the real server (issue 6, finding 1): with client.json a client sends
// commands and nothing else; with auditor.json an auditor reads the stream and writes nothing;
// the stream itself refuses purge and message delete, even to the daemon.
import { spawn, type ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startDaemon } from "../../src/daemon.js";
import { DEFAULT_SEED_IMAGE, type ClientConfig } from "../../src/config.js";
import { encodeEvent } from "../../src/events/codec.js";
import { STREAM, containerSubject } from "../../src/events/types.js";
import { envelope } from "../../src/handlers/command-service.js";
import { natsServerBinary } from "../../src/runtime/nats-server.js";
import { DAEMON_INBOX_PREFIX } from "../../src/runtime/nats-roles.js";
import { Paths } from "../../src/runtime/paths.js";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { freePort } from "../support/nats.js";
import { missing } from "../support/prereq.js";
import { until } from "../support/proc.js";
import { connectAs, secretsOf } from "../support/roles.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

const refused = (subject: string, op = "Publish") => new RegExp(`Permissions Violation for ${op} to "${subject.replace(/[$.>*]/g, "\\$&")}"`);
const request = (nc: NatsConnection, subject: string, data = "") => nc.request(subject, data, { timeout: 5_000 });
const forged = (id: string) =>
  encodeEvent(envelope({ type: "ContainerRemoved", data: {} }, { node: "x", actor: "mallory", correlationId: randomUUID(), causationId: null }, randomUUID()));

type C = { id: string; state: string };

async function readAll(nc: NatsConnection, last: number): Promise<number[]> {
  const consumer = await jetstream(nc).consumers.get(STREAM, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 1 });
  const msgs = await consumer.consume();
  const seqs: number[] = [];
  for await (const m of msgs) {
    seqs.push(m.seq);
    if (m.seq >= last) break;
  }
  msgs.stop();
  return seqs;
}

describe.skipIf(skip)("roles on NATS", () => {
  let d: TestDaemon;
  let asClient: NatsConnection;
  let asAuditor: NatsConnection;
  let asDaemon: NatsConnection;
  let jsm: JetStreamManager;
  let id: string;
  const lastSeq = async () => (await jsm.streams.info(STREAM)).state.last_seq;
  const listed = async () => (await d.get<{ containers: C[] }>("/v1/containers?all=true")).containers;

  beforeAll(async () => {
    d = await startTestDaemon();
    asClient = await connectAs(d.dataRoot, "client");
    asAuditor = await connectAs(d.dataRoot, "auditor");
    asDaemon = await connectAs(d.dataRoot, "daemon");
    jsm = await jetstreamManager(asDaemon);
    const r = await d.cmd<{ id: string }>("container.run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 });
    expect(r.error).toBeUndefined();
    id = r.result!.id;
  });
  afterAll(async () => {
    await Promise.all([asClient, asAuditor, asDaemon].map((nc) => nc?.close()));
    await d?.destroy();
  });

  it("writes the client's user to client.json and the auditor's to auditor.json (0600); the daemon's stay in secrets.json", async () => {
    const s = await secretsOf(d.dataRoot);
    const auditor = JSON.parse(await readFile(join(d.dataRoot, "auditor.json"), "utf8"));
    expect(d.client.nats).toEqual({ servers: d.client.nats.servers, user: s.client.user, pass: s.client.pass });
    expect(auditor).toEqual({ node: d.node, nats: { servers: d.client.nats.servers, user: s.auditor.user, pass: s.auditor.pass } });
    for (const f of ["secrets.json", "client.json", "auditor.json"]) expect((await stat(join(d.dataRoot, f))).mode & 0o777, f).toBe(0o600);
    expect(JSON.stringify([d.client, auditor])).not.toContain(s.natsPass);
  });

  describe("with client.json", () => {
    it("a forged ContainerRemoved on the container's subject is refused: the log and the container stay", async () => {
      const before = await lastSeq();
      await expect(jetstream(asClient).publish(containerSubject(id), forged(id), { timeout: 5_000 })).rejects.toThrow(refused(containerSubject(id)));
      // A bare publish (no ack asked) is refused as well: the server says so on the connection.
      const errors: string[] = [];
      void (async () => {
        for await (const s of asClient.status()) if (s.type === "error") errors.push(s.error.message);
      })();
      asClient.publish(containerSubject(id), forged(id));
      await asClient.flush();
      await until(async () => errors.some((e) => refused(containerSubject(id)).test(e)), 5_000);
      expect(await lastSeq()).toBe(before);
      expect((await listed()).find((c) => c.id === id)?.state).toBe("running");
    });

    it("the JetStream API, the KV buckets and object stores are refused", async () => {
      const before = await lastSeq();
      for (const subject of [
        "$JS.API.INFO",
        `$JS.API.STREAM.INFO.${STREAM}`,
        `$JS.API.STREAM.PURGE.${STREAM}`,
        `$JS.API.STREAM.DELETE.${STREAM}`,
        `$JS.API.STREAM.MSG.DELETE.${STREAM}`,
        `$JS.API.CONSUMER.CREATE.${STREAM}`,
        `$JS.API.DIRECT.GET.${STREAM}`,
        "$KV.berth_requests.x",
        "$O.berth.x",
      ]) {
        await expect(request(asClient, subject, "{}"), subject).rejects.toThrow(refused(subject));
      }
      await expect(jetstreamManager(asClient)).rejects.toThrow(refused("$JS.API.INFO"));
      expect(await lastSeq()).toBe(before);
    });

    it("subscribing to berth.cmd.> is refused, in the daemons' queue group or not; commands still reach the daemon", async () => {
      for (const queue of ["berth-cmd", undefined]) {
        const sub = asClient.subscribe("berth.cmd.>", queue ? { queue } : {});
        expect(String(await sub.closed)).toMatch(refused("berth.cmd.>", "Subscription"));
      }
      const inbox = asClient.subscribe(`${DAEMON_INBOX_PREFIX}.>`);
      expect(String(await inbox.closed)).toMatch(refused(`${DAEMON_INBOX_PREFIX}.>`, "Subscription"));
      const r = (await request(asClient, "berth.cmd.container.kill", JSON.stringify({ id: "no-such" }))).json<{ error?: { code: string } }>();
      expect(r.error?.code).toBe("NotFound");
    });

    it("runs and removes a container", async () => {
      const run = (await request(asClient, "berth.cmd.container.run", JSON.stringify({ image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 }))).json<{
        ok: boolean;
        result: C;
      }>();
      expect(run).toMatchObject({ ok: true, result: { state: "running" } });
      const rm = (await request(asClient, "berth.cmd.container.remove", JSON.stringify({ id: run.result.id, force: true }))).json<{ ok: boolean }>();
      expect(rm.ok).toBe(true);
      expect((await listed()).map((c) => c.id)).not.toContain(run.result.id);
    });
  });

  describe("with auditor.json", () => {
    it("an ordered consumer reads every event; stream info and direct get work", async () => {
      const last = await lastSeq();
      expect(await readAll(asAuditor, last)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
      const ajsm = await jetstreamManager(asAuditor);
      expect((await ajsm.streams.info(STREAM)).state.last_seq).toBeGreaterThanOrEqual(last);
      expect((await ajsm.direct.getMessage(STREAM, { last_by_subj: containerSubject(id) }))?.subject).toBe(containerSubject(id));
    });

    it("publishing events, purge, delete, message delete, stream updates, KV and commands are refused", async () => {
      const before = await lastSeq();
      await expect(jetstream(asAuditor).publish(containerSubject(id), forged(id), { timeout: 5_000 })).rejects.toThrow(refused(containerSubject(id)));
      const ajsm = await jetstreamManager(asAuditor);
      await expect(ajsm.streams.purge(STREAM)).rejects.toThrow(refused(`$JS.API.STREAM.PURGE.${STREAM}`));
      await expect(ajsm.streams.delete(STREAM)).rejects.toThrow(refused(`$JS.API.STREAM.DELETE.${STREAM}`));
      await expect(ajsm.streams.deleteMessage(STREAM, 1)).rejects.toThrow(refused(`$JS.API.STREAM.MSG.DELETE.${STREAM}`));
      await expect(ajsm.streams.update(STREAM, { max_msgs: 1 })).rejects.toThrow(refused(`$JS.API.STREAM.UPDATE.${STREAM}`));
      for (const subject of [`$JS.API.CONSUMER.DELETE.${STREAM}.x`, "$KV.berth_requests.x", "berth.cmd.container.remove"]) {
        await expect(request(asAuditor, subject, JSON.stringify({ id, force: true })), subject).rejects.toThrow(refused(subject));
      }
      const sub = asAuditor.subscribe("berth.cmd.>");
      expect(String(await sub.closed)).toMatch(refused("berth.cmd.>", "Subscription"));
      expect(await lastSeq()).toBe(before);
      expect((await listed()).find((c) => c.id === id)?.state).toBe("running");
    });
  });

  describe("with the daemon's own credentials", () => {
    it("purge and message delete are refused by the stream (deny_purge, deny_delete), deleting the stream by the permissions", async () => {
      const before = await lastSeq();
      const { config } = await jsm.streams.info(STREAM);
      expect(config).toMatchObject({ deny_delete: true, deny_purge: true });
      await expect(jsm.streams.purge(STREAM)).rejects.toThrow(/purge not permitted/);
      await expect(jsm.streams.deleteMessage(STREAM, 1)).rejects.toThrow(/message delete not permitted/);
      await expect(jsm.streams.deleteMessage(STREAM, 1, false)).rejects.toThrow(/message delete not permitted/);
      await expect(jsm.streams.delete(STREAM)).rejects.toThrow(refused(`$JS.API.STREAM.DELETE.${STREAM}`));
      // And the flags cannot be lifted.
      await expect(jsm.streams.update(STREAM, { deny_delete: false, deny_purge: false })).rejects.toThrow(/can not cancel/);
      expect(await lastSeq()).toBe(before);
    });
  });
});

/** A nats-server of the test's own, from a config file (stopped by its pid). */
async function startServer(conf: string, port: number, env: Record<string, string> = {}): Promise<ChildProcess> {
  const child = spawn(natsServerBinary(), ["-c", conf], { stdio: "ignore", env: { ...process.env, ...env } });
  await until(async () => {
    if (child.exitCode !== null) throw new Error(`nats-server exited with ${child.exitCode}`);
    const nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false }).catch((e: Error) => (/auth/i.test(e.message) ? "up" : null));
    if (nc && typeof nc !== "string") await nc.close();
    return nc !== null;
  }, 15_000);
  return child;
}

async function halt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await gone;
}

describe.skipIf(skip)("roles on a data root of an older daemon", () => {
  it("keeps secrets.json's values, replaces the one-user server, and gives the old stream deny_delete and deny_purge", async () => {
    const dataRoot = await mkdtemp(join(tmpdir(), "berth-roles-old-"));
    const port = await freePort();
    const dir = join(dataRoot, "nats");
    const old = { natsUser: "berth", natsPass: `old-${randomUUID()}`, httpToken: `tok-${randomUUID()}` };
    let oldServer: ChildProcess | null = null;
    let td: TestDaemon | null = null;
    try {
      await mkdir(join(dir, "store"), { recursive: true, mode: 0o700 });
      await writeFile(join(dataRoot, "secrets.json"), JSON.stringify(old, null, 2), { mode: 0o600 });
      // The config an older daemon wrote: one user, everything allowed.
      await writeFile(
        join(dir, "nats.conf"),
        [
          `listen: "127.0.0.1:${port}"`,
          `server_name: "berth_${port}"`,
          `pid_file: ${JSON.stringify(join(dir, "nats-server.pid"))}`,
          `jetstream {`,
          `  store_dir: ${JSON.stringify(join(dir, "store"))}`,
          `}`,
          `authorization {`,
          `  user: "berth"`,
          `  password: ${JSON.stringify(old.natsPass)}`,
          `}`,
          "",
        ].join("\n"),
        { mode: 0o600 },
      );
      oldServer = await startServer(join(dir, "nats.conf"), port);
      const nc = await connect({ servers: `127.0.0.1:${port}`, user: old.natsUser, pass: old.natsPass });
      const ojsm = await jetstreamManager(nc);
      await ojsm.streams.add({ name: STREAM, subjects: ["berth.ev.>"], allow_direct: true });
      expect((await ojsm.streams.info(STREAM)).config).toMatchObject({ deny_delete: false, deny_purge: false });
      await nc.close();

      td = await startTestDaemon({ dataRoot, natsPort: port });
      // The old server is gone (its config had no roles), the data root's store is kept.
      await until(async () => oldServer!.exitCode !== null || oldServer!.signalCode !== null, 10_000);
      const s = await secretsOf(dataRoot);
      expect(s).toMatchObject(old);
      expect(td.client.nats.user).toBe(s.client.user);
      const asDaemon = await connectAs(dataRoot, "daemon");
      try {
        const { config, state } = await (await jetstreamManager(asDaemon)).streams.info(STREAM);
        expect(config).toMatchObject({ deny_delete: true, deny_purge: true });
        expect(state.last_seq).toBeGreaterThanOrEqual(2); // NodeStarted, NodeRestored of this daemon
      } finally {
        await asDaemon.close();
      }
      await expect(jetstreamManager(td.nc)).rejects.toThrow(refused("$JS.API.INFO"));
    } finally {
      await td?.destroy();
      if (oldServer) await halt(oldServer);
      await rm(dataRoot, { recursive: true, force: true });
    }
  });
});

describe.skipIf(skip)("deploy/nats-berth-users.conf on an external server", () => {
  it("gives the daemon, the client and the auditor the same roles; the daemon's password stays out of client.json", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-roles-ext-"));
    const dataRoot = join(dir, "root");
    const port = await freePort();
    const pass = { daemon: `d-${randomUUID()}`, client: `c-${randomUUID()}`, auditor: `a-${randomUUID()}` };
    let server: ChildProcess | null = null;
    let daemon: Awaited<ReturnType<typeof startDaemon>> | null = null;
    const conns: NatsConnection[] = [];
    try {
      // nats-server includes files relative to the including config only.
      await copyFile(resolve(__dirname, "../../deploy/nats-berth-users.conf"), join(dir, "nats-berth-users.conf"));
      await writeFile(
        join(dir, "server.conf"),
        `listen: "127.0.0.1:${port}"\njetstream { store_dir: ${JSON.stringify(join(dir, "js"))} }\ninclude ./nats-berth-users.conf\n`,
      );
      server = await startServer(join(dir, "server.conf"), port, {
        BERTH_NATS_DAEMON_PASS: JSON.stringify(pass.daemon),
        BERTH_NATS_CLIENT_PASS: JSON.stringify(pass.client),
        BERTH_NATS_AUDITOR_PASS: JSON.stringify(pass.auditor),
      });
      daemon = await startDaemon({
        dataRoot,
        node: `ext${randomUUID().slice(0, 8)}`,
        natsPort: port,
        natsUrl: `nats://berth:${encodeURIComponent(pass.daemon)}@127.0.0.1:${port}`,
        httpListen: "127.0.0.1:0",
        seedImage: process.env.BERTH_SEED_IMAGE ?? DEFAULT_SEED_IMAGE,
      });
      const client = JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
      expect(client.nats).toEqual({ servers: [`nats://127.0.0.1:${port}`] });
      expect(JSON.stringify(client)).not.toContain(pass.daemon);

      const asClient = await connect({ servers: client.nats.servers, user: "berth-client", pass: pass.client });
      conns.push(asClient);
      const run = (await request(asClient, "berth.cmd.container.run", JSON.stringify({ image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 }))).json<{ ok: boolean; result: C }>();
      expect(run).toMatchObject({ ok: true, result: { state: "running" } });
      const cid = run.result.id;
      await expect(jetstream(asClient).publish(containerSubject(cid), forged(cid), { timeout: 5_000 })).rejects.toThrow(refused(containerSubject(cid)));
      await expect(request(asClient, `$JS.API.STREAM.INFO.${STREAM}`)).rejects.toThrow(refused(`$JS.API.STREAM.INFO.${STREAM}`));

      const asAuditor = await connect({ servers: client.nats.servers, user: "berth-auditor", pass: pass.auditor });
      conns.push(asAuditor);
      const last = (await (await jetstreamManager(asAuditor)).streams.info(STREAM)).state.last_seq;
      expect(await readAll(asAuditor, last)).toHaveLength(last);
      await expect((await jetstreamManager(asAuditor)).streams.purge(STREAM)).rejects.toThrow(refused(`$JS.API.STREAM.PURGE.${STREAM}`));

      const rmd = (await request(asClient, "berth.cmd.container.remove", JSON.stringify({ id: cid, force: true }))).json<{ ok: boolean }>();
      expect(rmd.ok).toBe(true);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
      await daemon?.stop();
      if (server) await halt(server);
      await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });
});
