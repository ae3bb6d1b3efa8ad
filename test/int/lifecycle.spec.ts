// The user stories of the core, end to end on the real stack: a daemon with its embedded
// nats-server, runc containers under conmon, commands over NATS, queries over HTTP.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type C = { id: string; name: string; state: string; pid: number | null; exitCode: number | null; finishedAt: string | null; version: number };
type Ev = { type: string; seq: number; data: Record<string, unknown>; causationId: string | null; at: string };

describe.skipIf(skip)("container lifecycle on the real stack", () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d?.destroy();
  });

  it("is ready, has busybox:latest, and wrote client.json 0600", async () => {
    expect((await d.http("/readyz", { token: null })).status).toBe(200);
    const { images } = await d.get<{ images: { name: string }[] }>("/v1/images");
    expect(images.map((i) => i.name)).toContain("busybox:latest");
    const mode = (await import("node:fs")).statSync(`${d.dataRoot}/client.json`).mode & 0o777;
    expect(mode).toBe(0o600);
    expect(d.client).toMatchObject({ node: d.node, nats: { servers: [expect.stringMatching(/^nats:\/\/127\.0\.0\.1:/)] } });
  });

  it("runs, lists, logs, stops, starts again and removes a container, with every event in order", async () => {
    const run = await d.cmd<{ id: string; name: string; state: string; pid: number }>("container.run", {
      name: "web",
      image: "busybox:latest",
      cmd: ["sh", "-c", "echo hello; sleep 1000"],
    });
    expect(run.error).toBeUndefined();
    const { id, pid } = run.result!;
    expect(run.result).toMatchObject({ name: "web", state: "running" });
    expect(pid).toBeGreaterThan(0);
    expect(alive(pid)).toBe(true);

    const ps = await d.get<{ containers: C[] }>("/v1/containers");
    expect(ps.containers.find((c) => c.name === "web")).toMatchObject({ id, state: "running", pid });

    const logs = await until(async () => {
      const t = await (await d.http(`/v1/containers/web/logs`)).text();
      return t.includes("hello") && t;
    });
    expect(logs.trim()).toBe("hello");

    // sh as pid 1 ignores SIGTERM: the stop escalates to SIGKILL after the timeout.
    const stop = await d.cmd<{ state: string; exitCode: number }>("container.stop", { id: "web", timeoutSec: 1 });
    expect(stop.result).toMatchObject({ id, state: "exited", exitCode: 137 });
    expect(alive(pid)).toBe(false);
    const all = await d.get<{ containers: C[] }>("/v1/containers?all=true");
    expect(all.containers.find((c) => c.id === id)).toMatchObject({ state: "exited", exitCode: 137 });
    expect((await d.get<{ containers: C[] }>("/v1/containers")).containers.find((c) => c.id === id)).toBeUndefined();

    const again = await d.cmd<{ state: string; pid: number }>("container.start", { id: id.slice(0, 8) });
    expect(again.result).toMatchObject({ id, state: "running" });
    expect(again.result!.pid).not.toBe(pid);

    const rm = await d.cmd("container.remove", { id: "web", force: true });
    expect(rm).toEqual({ ok: true, result: { id } });
    expect((await d.http(`/v1/containers/${id}`)).status).toBe(404);
    expect(existsSync(`${d.dataRoot}/containers/${id}`)).toBe(false);
    expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain(id);

    const { events } = await d.get<{ events: Ev[] }>(`/v1/events?container=${id}`);
    expect(events.map((e) => e.type)).toEqual([
      "ContainerCreated",
      "ContainerStartRequested",
      "ContainerStarted",
      "ContainerStopRequested",
      "ContainerExited",
      "ContainerStartRequested",
      "ContainerStarted",
      "ContainerRemoveRequested",
      "ContainerExited",
      // Bridge is the default: its IP is released before it goes.
      "ContainerNetworkDetached",
      "ContainerRemoved",
    ]);
    // Each outcome names the intent that caused it.
    expect(events[2].causationId).toBe((events[1] as unknown as { eventId: string }).eventId);

    // Time travel: as of the first ContainerStarted the container was running with its first pid.
    const at = await d.get<{ seq: number; containers: C[] }>(`/v1/state?at=${events[2].seq}`);
    expect(at.seq).toBe(events[2].seq);
    expect(at.containers.find((c) => c.id === id)).toMatchObject({ state: "running", pid });
    const atExit = await d.get<{ containers: C[] }>(`/v1/state?at=${events[4].seq}`);
    expect(atExit.containers.find((c) => c.id === id)).toMatchObject({ state: "exited", exitCode: 137 });
  });

  it("records a container's own exit with its code and real exit time", async () => {
    const before = Date.now();
    const run = await d.cmd<{ id: string }>("container.run", { name: "seven", image: "busybox", cmd: ["sh", "-c", "sleep 0.3; exit 7"] });
    expect(run.ok).toBe(true);
    const id = run.result!.id;
    const c = await until(async () => {
      const c = await d.get<C>(`/v1/containers/${id}`);
      return c.state === "exited" && c;
    });
    expect(c.exitCode).toBe(7);
    const exitedAt = Date.parse(c.finishedAt!);
    expect(exitedAt).toBeGreaterThanOrEqual(before + 250);
    expect(exitedAt).toBeLessThanOrEqual(Date.now());
    const { events } = await d.get<{ events: Ev[] }>(`/v1/containers/${id}/events`);
    expect(events.at(-1)).toMatchObject({ type: "ContainerExited", data: { exitCode: 7, oomKilled: false } });
    await d.cmd("container.remove", { id });
  });

  it("refuses to start a running container or stop a stopped one, and nothing changes", async () => {
    const run = await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd: ["sleep", "1000"] });
    const { id, pid } = run.result!;
    const v = (await d.get<C>(`/v1/containers/${id}`)).version;
    const again = await d.cmd("container.start", { id });
    expect(again.error?.code).toBe("Conflict");
    expect((await d.get<C>(`/v1/containers/${id}`)).version).toBe(v);
    expect((await d.get<C>(`/v1/containers/${id}`)).pid).toBe(pid);

    const rmLive = await d.cmd("container.remove", { id });
    expect(rmLive.error?.code).toBe("Conflict");

    expect((await d.cmd("container.kill", { id, signal: "KILL" })).result).toMatchObject({ id, state: "exited" });
    const stopAgain = await d.cmd("container.stop", { id });
    expect(stopAgain.error?.code).toBe("Conflict");
    await d.cmd("container.remove", { id });
  });

  it("pauses and unpauses, restarts with a new pid", async () => {
    const run = await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 });
    const { id, pid } = run.result!;
    expect((await d.cmd("container.pause", { id })).result).toEqual({ id, state: "paused" });
    expect(readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/State:\s+[SD]/);
    expect((await d.cmd("container.pause", { id })).error?.code).toBe("Conflict");
    expect((await d.cmd("container.unpause", { id })).result).toEqual({ id, state: "running" });
    const r = await d.cmd<{ pid: number; state: string }>("container.restart", { id, timeoutSec: 1 });
    expect(r.result?.state).toBe("running");
    expect(r.result?.pid).not.toBe(pid);
    await d.cmd("container.remove", { id, force: true });
  });

  it("applies a repeated requestId once and answers the repeat with the first reply", async () => {
    const body = { image: "busybox", cmd: ["true"], meta: { requestId: `req-${Date.now()}` } };
    const a = await d.cmd<{ id: string }>("container.create", body);
    const b = await d.cmd<{ id: string }>("container.create", body);
    expect(b).toEqual(a);
    const { containers } = await d.get<{ containers: C[] }>("/v1/containers?all=true");
    expect(containers.filter((c) => c.id === a.result!.id)).toHaveLength(1);
    await d.cmd("container.remove", { id: a.result!.id });
  });

  it("keeps named volumes, removes anonymous ones with their container, honours read-only binds", async () => {
    const waitExit = async (id: string) =>
      until(async () => {
        const c = await d.get<C>(`/v1/containers/${id}`);
        return c.state === "exited" && c;
      });
    const a = (await d.cmd<{ id: string }>("container.run", {
      image: "busybox", cmd: ["sh", "-c", "echo persisted > /data/f"], mounts: [{ type: "volume", source: "data", target: "/data" }],
    })).result!.id;
    expect((await waitExit(a)).exitCode).toBe(0);
    const b = (await d.cmd<{ id: string }>("container.run", {
      image: "busybox", cmd: ["cat", "/data/f"], mounts: [{ type: "volume", source: "data", target: "/data", readOnly: true }],
    })).result!.id;
    expect((await waitExit(b)).exitCode).toBe(0);
    expect((await (await d.http(`/v1/containers/${b}/logs`)).text()).trim()).toBe("persisted");

    const anon = (await d.cmd<{ id: string }>("container.run", {
      image: "busybox", cmd: ["sh", "-c", "echo x > /scratch/y; sleep 1000"], mounts: [{ type: "volume", target: "/scratch" }],
    })).result!.id;
    const anonDir = `${d.dataRoot}/volumes/anon-${anon.slice(0, 16)}-0`;
    await until(async () => existsSync(`${anonDir}/y`));
    const spec = (await d.get<{ spec: { mounts: { source: string }[] } }>(`/v1/containers/${anon}`)).spec;
    expect(spec.mounts[0].source).toBe(`anon-${anon.slice(0, 16)}-0`);
    expect((await d.cmd("container.remove", { id: anon, force: true })).ok).toBe(true);
    expect(existsSync(anonDir)).toBe(false);
    expect(existsSync(`${d.dataRoot}/volumes/data/f`)).toBe(true);

    const hostDir = mkdtempSync(join(tmpdir(), "berth-bind-"));
    writeFileSync(join(hostDir, "file"), "from the host\n");
    const ro = (await d.cmd<{ id: string }>("container.run", {
      image: "busybox", cmd: ["sh", "-c", "cat /in/file; touch /in/z"], mounts: [{ type: "bind", source: hostDir, target: "/in", readOnly: true }],
    })).result!.id;
    expect((await waitExit(ro)).exitCode).not.toBe(0);
    expect((await (await d.http(`/v1/containers/${ro}/logs`)).text())).toContain("from the host");
    expect(existsSync(join(hostDir, "z"))).toBe(false);
    for (const id of [a, b, ro]) await d.cmd("container.remove", { id });
    rmSync(hostDir, { recursive: true, force: true });
  });

  it("removes an autoRemove container when it exits", async () => {
    const run = await d.cmd<{ id: string }>("container.run", { image: "busybox", cmd: ["true"], autoRemove: true });
    const id = run.result!.id;
    await until(async () => (await d.http(`/v1/containers/${id}`)).status === 404);
    const { events } = await d.get<{ events: Ev[] }>(`/v1/events?container=${id}`);
    expect(events.map((e) => e.type).slice(-4)).toEqual(["ContainerExited", "ContainerRemoveRequested", "ContainerNetworkDetached", "ContainerRemoved"]);
  });
});
