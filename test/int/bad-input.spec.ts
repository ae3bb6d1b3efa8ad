// Malformed, hostile and oversized input: each gets a clear error code, and neither the log nor
// the host changes.
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { connectAs } from "../support/roles.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

describe.skipIf(skip)("bad input", () => {
  let d: TestDaemon;
  // The stream is read as the daemon: the client's credentials have no JetStream.
  let daemonNc: NatsConnection;
  let hostDir: string;
  let seqBefore = 0;
  const lastSeq = async () => (await (await jetstreamManager(daemonNc)).streams.info("BERTH_EVENTS")).state.last_seq;
  const hostState = async () => ({
    containers: await readdir(join(d.dataRoot, "containers")).catch(() => []),
    volumes: await readdir(join(d.dataRoot, "volumes")).catch(() => []),
  });
  let hostBefore: Awaited<ReturnType<typeof hostState>>;

  beforeAll(async () => {
    d = await startTestDaemon();
    daemonNc = await connectAs(d.dataRoot, "daemon");
    hostDir = await mkdtemp(join(tmpdir(), "berth-bind-"));
    // A name that is taken, for AlreadyExists.
    expect((await d.cmd("container.create", { name: "taken", image: "busybox" })).ok).toBe(true);
  });
  afterAll(async () => {
    await daemonNc?.close();
    await d?.destroy();
    await rm(hostDir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    seqBefore = await lastSeq();
    hostBefore = await hostState();
  });
  afterEach(async () => {
    // Nothing in the log, nothing on the host.
    expect(await lastSeq()).toBe(seqBefore);
    expect(await hostState()).toEqual(hostBefore);
  });

  const spec = (extra: Record<string, unknown>) => ({ image: "busybox", cmd: ["true"], ...extra });
  const code = async (verb: string, body: unknown) => (await d.cmd(verb, body)).error?.code;

  it.each([
    ["not JSON", "{image:"],
    ["a JSON array", "[1,2]"],
    ["a JSON string", '"busybox"'],
    ["invalid UTF-8", new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])],
  ])("a body that is %s is InvalidArgument", async (_what, raw) => {
    expect((await d.raw("container.create", raw)).error?.code).toBe("InvalidArgument");
  });

  it.each([
    ["an unknown top-level field", spec({ imagee: "x" })],
    ["an unknown nested field", spec({ restartPolicy: { name: "always", foo: 1 } })],
    ["image of the wrong type", { image: 5 }],
    ["cmd as a string", spec({ cmd: "echo hi" })],
    ["an empty image", { image: "" }],
    ["no image", { name: "x" }],
    ["name '../x'", spec({ name: "../x" })],
    ["name 'a b'", spec({ name: "a b" })],
    ["a 300-character name", spec({ name: "a".repeat(300) })],
    ["a relative bind source", spec({ mounts: [{ type: "bind", source: "relative/dir", target: "/data" }] })],
    ["a missing bind source", spec({ mounts: [{ type: "bind", source: "/nonexistent/berth/src", target: "/data" }] })],
    ["a relative mount target", spec({ mounts: [{ type: "tmpfs", target: "data" }] })],
    ["a target with ..", spec({ mounts: [{ type: "tmpfs", target: "/data/../etc" }] })],
    ["a volume name with /", spec({ mounts: [{ type: "volume", source: "a/b", target: "/data" }] })],
    ["a volume name with ..", spec({ mounts: [{ type: "volume", source: "..", target: "/data" }] })],
    ["a volume name with the reserved anon- prefix", spec({ mounts: [{ type: "volume", source: "anon-x", target: "/data" }] })],
    ["negative memory", spec({ resources: { memoryBytes: -1 } })],
    ["absurd memory", spec({ resources: { memoryBytes: 2 ** 60 } })],
    ["1 KiB of memory", spec({ resources: { memoryBytes: 1024 } })],
    ["negative cpus", spec({ resources: { cpus: -2 } })],
    ["absurd pids", spec({ resources: { pidsLimit: 1e12 } })],
    ["autoRemove with a restart policy", spec({ autoRemove: true, restartPolicy: { name: "always" } })],
    ["an unknown restart policy", spec({ restartPolicy: { name: "sometimes" } })],
    ["an unknown network mode", spec({ network: { mode: "overlay" } })],
    ["an IP with network none", spec({ network: { mode: "none", ip: "10.89.0.5" } })],
    ["a 100 KiB env entry", spec({ env: ["X=" + "y".repeat(100_000)] })],
    ["an unknown stop signal", spec({ stopSignal: "SIGNOPE" })],
    ["a stop signal number out of range", spec({ stopSignal: "99" })],
  ])("create with %s is InvalidArgument", async (_what, body) => {
    expect(await code("container.create", body)).toBe("InvalidArgument");
    expect(await code("container.run", body)).toBe("InvalidArgument");
  });

  it("a bind source inside the data root is InvalidArgument", async () => {
    const body = spec({ mounts: [{ type: "bind", source: join(d.dataRoot, "nats"), target: "/x" }] });
    expect(await code("container.run", body)).toBe("InvalidArgument");
  });

  it("an unknown image is NotFound, a taken name AlreadyExists", async () => {
    expect(await code("container.run", { image: "nosuch:latest" })).toBe("NotFound");
    expect(await code("container.create", spec({ name: "taken" }))).toBe("AlreadyExists");
  });

  it.each([
    ["container.start", { id: "nosuch" }, "NotFound"],
    ["container.start", { id: "" }, "InvalidArgument"],
    ["container.start", { id: "x".repeat(200) }, "InvalidArgument"],
    ["container.start", { id: "taken", extra: true }, "InvalidArgument"],
    ["container.stop", { id: "taken", timeoutSec: -1 }, "InvalidArgument"],
    ["container.kill", { id: "taken", signal: "SIGNOPE" }, "InvalidArgument"],
    ["container.kill", { id: "taken", signal: 99 }, "InvalidArgument"],
    ["container.remove", { id: "nosuch", force: true }, "NotFound"],
    ["container.remove", { id: "taken", force: "yes" }, "InvalidArgument"],
    ["container.update", { id: "taken" }, "InvalidArgument"],
    ["container.update", { id: "taken", resources: { cpus: 1e9 } }, "InvalidArgument"],
    ["container.upgrade", { id: "taken" }, "InvalidArgument"],
    ["container.upgrade", { id: "taken", image: "" }, "InvalidArgument"],
    ["container.upgrade", { id: "taken", image: "busybox:latest", healthGateSec: 1.5 }, "InvalidArgument"],
    ["container.upgrade", { id: "taken", image: "busybox:latest", env: "MODE=prod" }, "InvalidArgument"],
    ["container.upgrade", { id: "taken", image: "busybox:latest", cmd: ["x".repeat(200_000)] }, "InvalidArgument"],
    ["container.upgrade", { id: "taken", image: "busybox:latest" }, "InvalidArgument"],
    ["container.upgrade", { id: "nosuch", image: "busybox:latest" }, "NotFound"],
    ["container.rollback", { id: "taken" }, "Conflict"],
    ["container.rollback", { id: "taken", revision: 0 }, "InvalidArgument"],
    ["image.import", { source: "http://example.invalid/x.tar" }, "InvalidArgument"],
    ["image.import", { source: "oci-archive:relative.tar" }, "InvalidArgument"],
    ["image.remove", { name: "nosuch:1" }, "NotFound"],
    ["container.frobnicate", { id: "taken" }, "InvalidArgument"],
    ["nonsense", {}, "InvalidArgument"],
  ])("%s %j is %s", async (verb, body, expected) => {
    expect(await code(verb, body)).toBe(expected);
  });

  it("a body over our limit is InvalidArgument; one over the server's max payload never reaches us", async () => {
    const big = JSON.stringify(spec({ labels: { a: "x".repeat(600 * 1024) } }));
    expect((await d.raw("container.create", big)).error?.code).toBe("InvalidArgument");
    const huge = new Uint8Array(2 * 1024 * 1024).fill(0x20);
    await expect(d.raw("container.create", huge)).rejects.toThrow(/payload/i);
  });

  it("HTTP routes refuse a missing or wrong token with 401", async () => {
    for (const path of ["/v1/containers", "/v1/events", "/v1/containers/taken", "/v1/state?at=1", "/v1/images"]) {
      expect((await d.http(path, { token: null })).status).toBe(401);
      expect((await d.http(path, { token: "wrong" })).status).toBe(401);
    }
    const r = await d.http("/v1/containers", { token: "wrong" });
    expect(await r.json()).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
  });

  it("HTTP queries with bad parameters are 400, unknown refs 404", async () => {
    expect((await d.http("/v1/state")).status).toBe(400);
    expect((await d.http("/v1/state?at=yesterday")).status).toBe(400);
    expect((await d.http("/v1/events?limit=-5")).status).toBe(400);
    expect((await d.http("/v1/containers/nosuch")).status).toBe(404);
    expect((await d.http("/v1/containers/nosuch/logs")).status).toBe(404);
  });
});
