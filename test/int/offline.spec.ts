// Local checkpoints, stories 2 and 3 of issue 11, on the real stack: a daemon on an external
// nats-server (started by the test), its host "rebooted" (the daemon stopped, every container's
// process killed by its pid) while the server is down. The daemon starts, waits --offline-after
// for the log, starts the container marked berth.io/checkpoint=true from its local copy and not
// the other one, answers /readyz `offline` and lists it; the server comes back, the journal goes
// into the log once (the old run's end, the offline start, between NodeOffline and NodeOnline),
// and the daemon is ready with that process as the container's.
import { appendFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { existsSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { freePort, startNats, type TestNats } from "../support/nats.js";
import { BUILT, natsOf, startDaemonProc, stopProc, type DaemonProc } from "../support/daemon-proc.js";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { randomBytes } from "node:crypto";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type View = { id: string; name: string; state: string; pid: number | null };

describe.skipIf(skip)("offline start from local checkpoints", () => {
  let nats: TestNats;
  let d: TestDaemon;
  const killed: number[] = [];

  beforeAll(async () => {
    nats = await startNats();
    d = await startTestDaemon({ natsUrl: nats.url, offlineAfterSec: 1 });
  });
  // The daemon started while the log is down (it comes up once the log is back).
  let starting: Promise<TestDaemon> | null = null;
  afterAll(async () => {
    if (starting) {
      // A failure half-way: the log back, that daemon up, then removed like any other.
      await nats?.restart().catch(() => undefined);
      d = await starting;
    }
    for (const pid of killed) if (alive(pid)) process.kill(pid, "SIGKILL");
    try {
      await d?.destroy();
    } finally {
      await nats?.stop();
    }
  });

  type OfflineView = View & { restartCount: number; health: string; ip: string | null };
  /**
   * The "reboot": the daemon stopped, these processes killed by their pids, the log down; the
   * daemon started again (offline, it comes up once the log is back: `starting`). Returns a
   * reader of its offline /v1/containers.
   */
  const rebootOffline = async (pids: number[] = []): Promise<() => Promise<OfflineView[]>> => {
    const { dataRoot, node } = d;
    await d.stop();
    for (const pid of pids) process.kill(pid, "SIGKILL");
    await until(async () => pids.every((pid) => !alive(pid)), 10_000);
    await nats.kill();
    await sleep(200);
    const clientJson = join(dataRoot, "client.json");
    await rm(clientJson, { force: true });
    starting = startTestDaemon({ natsUrl: nats.url, dataRoot, node, offlineAfterSec: 1 });
    starting.catch(() => undefined);
    await until(async () => existsSync(clientJson) && JSON.parse(await readFile(clientJson, "utf8")).http?.url, 20_000);
    const client = JSON.parse(await readFile(clientJson, "utf8")) as { http: { url: string; token: string } };
    return async () => ((await (await fetch(client.http.url + "/v1/containers", { headers: { authorization: `Bearer ${client.http.token}` } })).json()) as { containers: OfflineView[] }).containers;
  };

  it("given a reboot while the log is down, then the marked container runs from its copy, and the log gets the span once it is back", async () => {
    const agent = await d.cmd<{ id: string; pid: number }>("container.run", { name: "agent", image: "busybox", cmd: ["sleep", "1000"], annotations: { "berth.io/checkpoint": "true" } });
    const plain = await d.cmd<{ id: string; pid: number }>("container.run", { name: "plain", image: "busybox", cmd: ["sleep", "1000"] });
    expect(agent.error).toBeUndefined();
    expect(plain.error).toBeUndefined();
    const agentId = agent.result!.id;
    await until(async () => existsSync(join(d.dataRoot, "local-checkpoints", `${agentId}.json`)), 10_000);

    // The reboot: no daemon, no container process, no log.
    const { dataRoot, node } = d;
    await d.stop();
    for (const r of [agent.result!, plain.result!]) process.kill(r.pid, "SIGKILL");
    await until(async () => !alive(agent.result!.pid) && !alive(plain.result!.pid), 10_000);
    await nats.kill();
    await sleep(200);
    // Bad input beside it: a copy whose image is gone from this node (never started, nothing of
    // it left), and a journal left with a torn record (dropped, the rest flushed).
    const ghost = "d".repeat(64);
    const copy = JSON.parse(await readFile(join(dataRoot, "local-checkpoints", `${agentId}.json`), "utf8")) as Record<string, unknown>;
    await writeFile(join(dataRoot, "local-checkpoints", `${ghost}.json`), JSON.stringify({ ...copy, id: ghost, name: "ghost", imageDigest: `sha256:${"0".repeat(64)}` }), { mode: 0o600 });
    await mkdir(join(dataRoot, "offline"), { recursive: true });
    await appendFile(join(dataRoot, "offline", "journal.ndjson"), '0badc0de {"id":"torn","subject":"berth.ev.container.');

    const clientJson = join(dataRoot, "client.json");
    await rm(clientJson, { force: true });
    const t0 = Date.now();
    starting = startTestDaemon({ natsUrl: nats.url, dataRoot, node, offlineAfterSec: 1 });
    starting.catch(() => undefined);
    await until(async () => existsSync(clientJson) && JSON.parse(await readFile(clientJson, "utf8")).http?.url, 20_000);
    const client = JSON.parse(await readFile(clientJson, "utf8")) as { http: { url: string; token: string } };
    const get = (path: string) => fetch(client.http.url + path, { headers: { authorization: `Bearer ${client.http.token}` } });
    const ready = await get("/readyz");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ phase: "offline" });
    const listed = (await (await get("/v1/containers")).json()) as { offline: boolean; containers: View[] };
    expect(listed.offline).toBe(true);
    expect(listed.containers.map((c) => [c.name, c.state])).toEqual([["agent", "running"]]);
    expect(existsSync(join(dataRoot, "containers", ghost))).toBe(false);
    const offlinePid = listed.containers[0].pid!;
    killed.push(offlinePid);
    expect(alive(offlinePid)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(15_000);
    // Commands need the log.
    expect((await fetch(client.http.url + "/v1/events", { headers: { authorization: `Bearer ${client.http.token}` } })).status).toBe(503);
    expect((await stat(join(dataRoot, "offline", "journal.ndjson"))).size).toBeGreaterThan(0);

    // The log is back.
    await nats.restart();
    d = await starting;
    starting = null;
    expect(await d.get<View>("/v1/containers/agent")).toMatchObject({ state: "running", pid: offlinePid });
    expect(await d.get<View>("/v1/containers/plain")).toMatchObject({ state: "exited" });
    const { events } = await d.get<{ events: { type: string; data: Record<string, unknown> }[] }>(`/v1/containers/${agentId}/events`);
    const types = events.map((e) => e.type);
    expect(types.slice(-2)).toEqual(["ContainerExited", "ContainerStarted"]);
    expect(events.at(-1)!.data.pid).toBe(offlinePid);
    expect(types.filter((t) => t === "ContainerStarted")).toHaveLength(2);
    const spans = await d.get<{ events: { type: string; node: string; data: Record<string, unknown> }[] }>("/v1/events?type=NodeOffline,NodeOnline");
    expect(spans.events.map((e) => [e.type, e.node])).toEqual([["NodeOffline", node], ["NodeOnline", node]]);
    expect(spans.events[0].data.started).toEqual([agentId]);
    expect(spans.events[1].data.facts).toBe(1);
    expect((await stat(join(dataRoot, "offline", "journal.ndjson"))).size).toBe(0);
  }, 120_000);

  it("given a container that keeps exiting while offline, then its restart policy restarts it there, and each exit, schedule and start reaches the log", async () => {
    const r = await d.cmd<{ id: string; pid: number }>("container.run", { name: "flappy", image: "busybox", cmd: ["sh", "-c", "sleep 0.4; exit 3"], network: { mode: "none" }, restartPolicy: { name: "always", backoff: { initialMs: 100, maxMs: 200 } }, annotations: { "berth.io/checkpoint": "true" } });
    expect(r.error).toBeUndefined();
    const id = r.result!.id;
    await until(async () => existsSync(join(d.dataRoot, "local-checkpoints", `${id}.json`)), 10_000);
    const listed = await rebootOffline();
    const flappy = async () => (await listed()).find((c) => c.name === "flappy");
    // Offline, it is started from its copy, exits, and is started again by its policy.
    await until(async () => ((await flappy())?.restartCount ?? 0) >= 2, 20_000);
    await nats.restart();
    d = await starting!;
    starting = null;
    // The span in the log: between this start's NodeOffline and NodeOnline, the copy's start and
    // every exit, schedule and restart after it, in order.
    const spans = await d.get<{ events: { type: string; seq: number }[] }>("/v1/events?type=NodeOffline,NodeOnline");
    const [off, on] = spans.events.slice(-2);
    expect([off.type, on.type]).toEqual(["NodeOffline", "NodeOnline"]);
    const { events } = await d.get<{ events: { type: string; seq: number }[] }>(`/v1/containers/${id}/events`);
    const span = events.filter((e) => e.seq > off.seq && e.seq < on.seq).map((e) => e.type);
    expect(span.filter((t) => t === "ContainerRestartScheduled").length).toBeGreaterThanOrEqual(2);
    expect(span.filter((t) => t === "ContainerStarted").length).toBeGreaterThanOrEqual(3);
    // The span opens with the end of the run the log had (it ended with the reboot) and the copy's start.
    expect(span.slice(0, 2), span.join(",")).toEqual(["ContainerExited", "ContainerStarted"]);
    for (let i = 2; i + 1 < span.length; i++) {
      if (span[i] === "ContainerRestartScheduled") expect(["ContainerStarted", "ContainerStartFailed"]).toContain(span[i + 1]);
      if (span[i] === "ContainerExited") expect(span[i + 1]).toBe("ContainerRestartScheduled");
    }
    // Back online, its policy goes on restarting it.
    const count = (await d.get<{ restartCount: number }>(`/v1/containers/${id}`)).restartCount;
    await until(async () => (await d.get<{ restartCount: number }>(`/v1/containers/${id}`)).restartCount > count, 10_000);
    expect((await d.cmd("container.remove", { id, force: true })).error).toBeUndefined();
  }, 120_000);

  it("given a health check that starts failing while offline, then (its volume's data there) its status changes and its onFailure kill are journaled and in the log once it is back", async () => {
    // Healthy until /tmp/bad exists in it (the test makes it, offline).
    const r = await d.cmd<{ id: string; pid: number }>("container.run", {
      name: "probed", image: "busybox", cmd: ["sleep", "1000"], network: { mode: "none" }, mounts: [{ type: "volume", source: "probedata", target: "/data" }],
      healthcheck: { test: ["sh", "-c", "test ! -e /tmp/bad"], intervalMs: 200, timeoutMs: 2000, retries: 2, onFailure: "kill" },
      annotations: { "berth.io/checkpoint": "true" },
    });
    expect(r.error).toBeUndefined();
    const id = r.result!.id;
    await until(async () => existsSync(join(d.dataRoot, "local-checkpoints", `${id}.json`)), 10_000);
    // Its volume's data is there again offline.
    await writeFile(`/proc/${r.result!.pid}/root/data/kept`, "before the reboot");
    const listed = await rebootOffline([r.result!.pid]);
    const probed = async () => (await listed()).find((c) => c.name === "probed");
    await until(async () => (await probed())?.health === "healthy", 10_000);
    const offlinePid = (await probed())!.pid!;
    killed.push(offlinePid);
    expect(await readFile(`/proc/${offlinePid}/root/data/kept`, "utf8")).toBe("before the reboot");
    await writeFile(`/proc/${offlinePid}/root/tmp/bad`, "");
    // Unhealthy, then killed by its onFailure; its policy (no) leaves it exited.
    await until(async () => (await probed())?.state === "exited", 20_000);
    await nats.restart();
    d = await starting!;
    starting = null;
    const { events } = await d.get<{ events: { type: string; data: Record<string, unknown> }[] }>(`/v1/containers/${id}/events`);
    const span = events.slice(events.map((e) => e.type).lastIndexOf("ContainerStarted"));
    const kinds = span.map((e) => e.type === "ContainerHealthChanged" ? `health:${String(e.data.status)}` : e.type);
    expect(kinds.slice(0, 4)).toEqual(["ContainerStarted", "health:healthy", "health:unhealthy", "ContainerKillRequested"]);
    // The kill's record and its exit race (the exit watcher may journal first): both, once.
    expect(kinds.slice(4).sort()).toEqual(["ContainerExited", "ContainerSignaled"]);
    expect(await d.get<View>(`/v1/containers/${id}`)).toMatchObject({ state: "exited" });
    expect((await d.cmd("container.remove", { id, force: true })).error).toBeUndefined();
  }, 120_000);

  it("given a pod marked berth.io/checkpoint=true, then offline its members start from their copies in one sandbox with the pod's IP, and the pod runs as the log says once it is back", async () => {
    const pod = await d.cmd<{ id: string }>("pod.create", { name: "critpod", annotations: { "berth.io/checkpoint": "true" } });
    expect(pod.error).toBeUndefined();
    const members: { id: string; pid: number }[] = [];
    for (const name of ["critdb", "critweb"]) {
      const r = await d.cmd<{ id: string; pid: number }>("container.run", { name, image: "busybox", cmd: ["sleep", "1000"], pod: "critpod" });
      expect(r.error).toBeUndefined();
      members.push(r.result!);
    }
    const before = await d.get<{ ip: string | null }>("/v1/pods/critpod");
    expect(before.ip).toMatch(/^\d+\.\d+\.\d+\.\d+$/);
    for (const m of members) await until(async () => existsSync(join(d.dataRoot, "local-checkpoints", `${m.id}.json`)), 10_000);
    const copy = JSON.parse(await readFile(join(d.dataRoot, "local-checkpoints", `${members[0].id}.json`), "utf8")) as { pod: { id: string; name: string; ip: string | null } };
    // The pod's own IP is recorded by `pod start`; members run one by one take theirs from the sandbox.
    expect(copy.pod).toMatchObject({ id: pod.result!.id, name: "critpod" });

    // The members' processes die with the "reboot"; the log is down.
    const listed = await rebootOffline(members.map((m) => m.pid));
    await until(async () => (await listed()).filter((c) => c.name.startsWith("crit") && c.state === "running").length === 2, 20_000);
    const offline = (await listed()).filter((c) => c.name.startsWith("crit")).sort((a, b) => a.name.localeCompare(b.name));
    for (const c of offline) killed.push(c.pid!);
    // One sandbox: both members in the same network namespace, with the pod's IP.
    const netns = offline.map((c) => readlinkSync(`/proc/${c.pid}/ns/net`));
    expect(netns[0]).toBe(netns[1]);
    expect(netns[0]).not.toBe(readlinkSync("/proc/self/ns/net"));
    expect(offline.map((c) => c.ip)).toEqual([before.ip, before.ip]);

    await nats.restart();
    d = await starting!;
    starting = null;
    const after = await d.get<{ state: string; ip: string | null; containers: View[] }>("/v1/pods/critpod");
    expect(after).toMatchObject({ state: "running", ip: before.ip });
    expect(after.containers.map((c) => [c.name, c.state]).sort()).toEqual(offline.map((c) => [c.name, "running"]));
    for (const c of offline) expect(await d.get<View>(`/v1/containers/${c.id}`)).toMatchObject({ state: "running", pid: c.pid });
    for (const m of members) {
      const { events } = await d.get<{ events: { type: string }[] }>(`/v1/containers/${m.id}/events`);
      expect(events.map((e) => e.type).slice(-2)).toEqual(["ContainerExited", "ContainerStarted"]);
    }
    expect((await d.cmd("pod.remove", { id: "critpod", force: true })).error).toBeUndefined();
  }, 120_000);

  it.skipIf(!BUILT)("given a daemon killed -9 after a removal and before its copy went, then offline it starts the copy, and the hand-back stops it, appends nothing and deletes the copy after the grace", async () => {
    const n2 = await startNats();
    const root = await mkdtemp(join(tmpdir(), "berth-off-"));
    const node = `o${randomBytes(3).toString("hex")}`;
    const args = ["--nats-url", n2.url, "--offline-after", "1", "--checkpoint-grace", "3"];
    const port = await freePort();
    let p: DaemonProc | null = null;
    const http = async (path: string) => {
      const c = p!.client();
      return fetch(c.http.url + path, { headers: { authorization: `Bearer ${c.http.token}` } });
    };
    const copyFile = (id: string) => join(root, "local-checkpoints", `${id}.json`);
    try {
      p = await startDaemonProc(root, node, port, { BERTH_FAULT: "copy-retiring:1" }, args);
      let nc = await natsOf(p);
      const r = (await nc.request("berth.cmd.container.run", JSON.stringify({ name: "agent", image: "busybox", cmd: ["sleep", "1000"], annotations: { "berth.io/checkpoint": "true" } }), { timeout: 30_000 })).json<{ ok: boolean; result: { id: string; pid: number } }>();
      expect(r.ok).toBe(true);
      const id = r.result.id;
      await until(async () => existsSync(copyFile(id)), 10_000);
      // Removed; the daemon dies between the removal in the log and the copy's deletion.
      await nc.request("berth.cmd.container.remove", JSON.stringify({ id, force: true }), { timeout: 3_000 }).catch(() => null);
      await p.exited;
      await nc.close().catch(() => undefined);
      expect(alive(r.result.pid)).toBe(false);
      expect(JSON.parse(await readFile(copyFile(id), "utf8"))).toMatchObject({ id, retiring: null });
      await n2.kill();

      // Offline: the copy is the last thing this node knew, so it starts it.
      p = await startDaemonProc(root, node, port, {}, args);
      const listed = (await (await http("/v1/containers")).json()) as { containers: View[] };
      expect(listed.containers.map((c) => [c.name, c.state])).toEqual([["agent", "running"]]);
      const pid = listed.containers[0].pid!;
      killed.push(pid);

      // The log is back: it says the container is gone, so that process stops and nothing of it is appended.
      await n2.restart();
      await until(async () => (await http("/readyz").catch(() => null))?.status === 200, 30_000);
      expect(alive(pid)).toBe(false);
      expect(existsSync(join(root, "containers", id))).toBe(false);
      expect(readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(root) && l.includes(id))).toEqual([]);
      const { events } = (await (await http(`/v1/events?container=${id}`)).json()) as { events: { type: string }[] };
      expect(events.at(-1)?.type).toBe("ContainerRemoved");
      const spans = (await (await http("/v1/events?type=NodeOnline")).json()) as { events: { node: string; data: { facts: number } }[] };
      expect(spans.events.filter((e) => e.node === node).map((e) => e.data.facts)).toEqual([0]);
      expect((await (await http("/v1/containers")).json()) as { containers: View[] }).toMatchObject({ containers: [] });
      // Its copy is retiring (never started offline again) for the grace period, then deleted.
      expect(JSON.parse(await readFile(copyFile(id), "utf8"))).toMatchObject({ id, retiring: { reason: "removed" } });
      await until(async () => !existsSync(copyFile(id)), 10_000);
    } finally {
      if (p) await stopProc(p);
      await n2.stop();
      await rm(root, { recursive: true, force: true });
    }
  }, 180_000);

  it.skipIf(!BUILT)("given the daemon killed -9 while offline and again while flushing, then each fact is in the log once, in one span", async () => {
    const n2 = await startNats();
    const root = await mkdtemp(join(tmpdir(), "berth-off-"));
    const node = `o${randomBytes(3).toString("hex")}`;
    const args = ["--nats-url", n2.url, "--offline-after", "1"];
    const port = await freePort();
    let p: DaemonProc | null = null;
    const http = async (path: string) => {
      const c = p!.client();
      return fetch(c.http.url + path, { headers: { authorization: `Bearer ${c.http.token}` } });
    };
    try {
      p = await startDaemonProc(root, node, port, {}, args);
      let nc = await natsOf(p);
      const r = (await nc.request("berth.cmd.container.run", JSON.stringify({ name: "agent", image: "busybox", cmd: ["sleep", "1000"], annotations: { "berth.io/checkpoint": "true" } }), { timeout: 30_000 })).json<{ ok: boolean; result: { id: string; pid: number } }>();
      await nc.close();
      expect(r.ok).toBe(true);
      const id = r.result.id;
      await until(async () => existsSync(join(root, "local-checkpoints", `${id}.json`)), 10_000);
      await stopProc(p);
      process.kill(r.result.pid, "SIGKILL");
      await until(async () => !alive(r.result.pid), 10_000);
      await n2.kill();

      // Offline; then killed -9 there.
      p = await startDaemonProc(root, node, port, {}, args);
      const first = (await (await http("/v1/containers")).json()) as { containers: View[] };
      const pid = first.containers[0].pid!;
      killed.push(pid);
      await stopProc(p, "SIGKILL");
      // Offline again: the same process runs on, nothing started twice.
      p = await startDaemonProc(root, node, port, {}, args);
      expect(((await (await http("/v1/containers")).json()) as { containers: View[] }).containers.map((c) => [c.name, c.pid])).toEqual([["agent", pid]]);
      await stopProc(p, "SIGKILL");
      // Offline, the log back, and killed -9 after the first fact went in.
      p = await startDaemonProc(root, node, port, { BERTH_FAULT: "offline-flushing:1" }, args);
      await n2.restart();
      await p.exited;
      // The next start finishes the flush.
      p = await startDaemonProc(root, node, port, {}, args);
      await until(async () => (await http("/readyz").catch(() => null))?.status === 200, 30_000);
      nc = await natsOf(p);
      await nc.close();
      const view = (await (await http(`/v1/containers/${id}`)).json()) as View;
      expect(view).toMatchObject({ state: "running", pid });
      const { events } = (await (await http(`/v1/containers/${id}/events`)).json()) as { events: { type: string; data: Record<string, unknown> }[] };
      expect(events.filter((e) => e.type === "ContainerStarted").map((e) => e.data.pid)).toEqual([r.result.pid, pid]);
      expect(events.filter((e) => e.type === "ContainerExited")).toHaveLength(1);
      const spans = (await (await http("/v1/events?type=NodeOffline,NodeOnline")).json()) as { events: { type: string; node: string }[] };
      expect(spans.events.filter((e) => e.node === node).map((e) => e.type)).toEqual(["NodeOffline", "NodeOnline"]);
      expect((await stat(join(root, "offline", "journal.ndjson"))).size).toBe(0);
      // Removed through the API (its process, mounts and attachment with it).
      nc = await natsOf(p);
      expect((await nc.request("berth.cmd.container.remove", JSON.stringify({ id, force: true }), { timeout: 30_000 })).json<{ ok: boolean }>().ok).toBe(true);
      await nc.close();
    } finally {
      if (p) await stopProc(p);
      await n2.stop();
      await rm(root, { recursive: true, force: true });
    }
  }, 180_000);
});
