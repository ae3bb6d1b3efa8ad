// The runtime against the real stack: runc, conmon, overlayfs and the busybox OCI archive. Every
// test has its own data root, node name and random 64-hex ids, and removes what it started
// (containers through cleanup(); never a kill by process name).
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, rmdir, stat } from "node:fs/promises";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { ContainerSpec } from "../../src/shared/spec.js";
import { logger } from "../../src/log.js";
import { resolveTool } from "../../src/runtime/exec.js";
import { HostRuntime } from "../../src/runtime/host.js";
import { ImageStore } from "../../src/runtime/images.js";
import { UNIX_PATH_MAX } from "../../src/runtime/paths.js";
import type { ExitInfo, ImageRecord } from "../../src/shared/host-facts.js";
import { alive } from "../support/proc.js";

const ARCHIVE = "/opt/berth/images/busybox-latest.oci.tar";
const CI = process.env.CI === "true";
const log = logger("test.runtime");

async function missingPrereqs(): Promise<string[]> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root");
  for (const t of ["runc", "conmon", "skopeo", "umoci"]) await resolveTool(t).catch(() => missing.push(t));
  if (!existsSync(ARCHIVE)) missing.push(`${ARCHIVE} (run deploy/build-busybox-image.sh)`);
  return missing;
}
const missing = await missingPrereqs();

const hex64 = () => randomBytes(32).toString("hex");
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sidOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[3]);
const mountinfo = () => readFileSync("/proc/self/mountinfo", "utf8");

interface Env {
  root: string;
  node: string;
  rt: HostRuntime;
  image: ImageRecord;
  ids: string[];
}
const envs: Env[] = [];

/** A fresh data root with busybox imported. `prefixLen` makes a deliberately long data root. */
async function fresh(prefixLen = 0): Promise<Env> {
  const pad = prefixLen > 0 ? "x".repeat(prefixLen) : "";
  const root = await mkdtemp(`/tmp/berth-rt-${pad}`);
  const node = `n${randomBytes(4).toString("hex")}`;
  const images = new ImageStore({ dataRoot: root, log });
  const image = await images.import(`oci-archive:${ARCHIVE}`);
  const rt = new HostRuntime({ dataRoot: root, node, log });
  await rt.init();
  const env = { root, node, rt, image, ids: [] };
  envs.push(env);
  return env;
}

async function run(env: Env, spec: Partial<ContainerSpec>, name = "c1"): Promise<{ id: string; pid: number; conmonPid: number }> {
  const id = hex64();
  env.ids.push(id);
  await env.rt.prepare({ id, name, spec: { image: "busybox:latest", ...spec }, image: env.image });
  const r = await env.rt.start(id);
  return { id, pid: r.pid, conmonPid: r.conmonPid };
}

async function until<T>(fn: () => Promise<T> | T, ok: (v: T) => boolean, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > deadline) return v;
    await sleep(25);
  }
}

afterEach(async () => {
  for (const env of envs.splice(0)) {
    for (const id of env.ids) await env.rt.cleanup(id).catch((err) => log.error({ err, id }, "cleanup failed"));
    // As a daemon's clean stop does: the bridge and the machine-wide subnet claim go.
    await env.rt.network.releaseIfUnused();
    await rm(env.rt.paths.socketDir, { recursive: true, force: true });
    await rm(env.root, { recursive: true, force: true });
    for (const ctl of await readdir("/sys/fs/cgroup").catch(() => [] as string[])) {
      await rmdir(`/sys/fs/cgroup/${ctl}/berth/${env.node}`).catch(() => undefined);
    }
  }
});

describe.skipIf(missing.length > 0 && !CI)("runtime on real runc + conmon + overlay", () => {
  beforeAll(() => {
    if (missing.length) throw new Error(`prerequisites missing: ${missing.join(", ")}`);
  });

  it("given busybox, when run with echo + sleep, then running, logs say hello, and SIGTERM ends it via the exit file", async () => {
    const env = await fresh();
    const { id, pid, conmonPid } = await run(env, { cmd: ["sh", "-c", "trap 'exit 143' TERM; echo hello; sleep 1000 & wait"] });
    expect(alive(pid)).toBe(true);
    expect(await env.rt.state(id)).toMatchObject({ id, status: "running", pid });
    expect(await env.rt.conmonAlive(id)).toBe(true);
    expect(alive(conmonPid)).toBe(true);
    const logs = await until(() => env.rt.logs(id), (l) => l.length > 0);
    expect(logs).toEqual([expect.objectContaining({ stream: "stdout", text: "hello" })]);
    expect(Date.parse(logs[0].time)).not.toBeNaN();

    await env.rt.signal(id, "SIGTERM");
    const exit = await env.rt.waitExit(id, 10_000);
    expect(exit).toMatchObject({ exitCode: 143, oomKilled: false });
    expect((await env.rt.state(id))?.status).toBe("stopped");
    expect(alive(pid)).toBe(false);
  });

  it("given sh -c 'exit 7', when it ends, then exit code 7 with a plausible exitedAt", async () => {
    const env = await fresh();
    const t0 = Date.now();
    const { id } = await run(env, { entrypoint: ["sh", "-c"], cmd: ["exit 7"] });
    const exit = (await env.rt.waitExit(id, 10_000)) as ExitInfo;
    expect(exit.exitCode).toBe(7);
    const at = Date.parse(exit.exitedAt);
    expect(at).toBeGreaterThanOrEqual(t0 - 1000);
    expect(at).toBeLessThanOrEqual(Date.now() + 1000);
    expect(await env.rt.readExit(id)).toEqual(exit);
  });

  it("given a running container, when the HostRuntime object is dropped, then the container and its conmon live on in their own session", async () => {
    const env = await fresh();
    const { id, pid, conmonPid } = await run(env, { cmd: ["sleep", "1000"] });
    env.rt = null as unknown as HostRuntime;
    await sleep(100);
    const again = new HostRuntime({ dataRoot: env.root, node: env.node, log });
    await again.init();
    env.rt = again;
    expect(await again.state(id)).toMatchObject({ status: "running", pid });
    expect(await again.conmonAlive(id)).toBe(true);
    expect(sidOf(conmonPid)).not.toBe(sidOf(process.pid));
    expect(sidOf(conmonPid)).toBe(conmonPid);
    // start is idempotent: a running container reports its pid.
    expect(await again.start(id)).toMatchObject({ pid, conmonPid });
  });

  it("given a running container, when paused and resumed, then runc reports paused then running", async () => {
    const env = await fresh();
    const { id } = await run(env, { cmd: ["sleep", "1000"] });
    await env.rt.pause(id);
    expect((await env.rt.state(id))?.status).toBe("paused");
    await env.rt.resume(id);
    expect((await env.rt.state(id))?.status).toBe("running");
    // A paused container can be cleaned up too (runc thaws it to kill it).
    await env.rt.pause(id);
    await env.rt.cleanup(id);
    expect(await env.rt.state(id)).toBeNull();
  });

  it("given a memory limit, when started, then config.json and the cgroup carry it", async () => {
    const env = await fresh();
    const limit = 64 * 1024 * 1024;
    const { id } = await run(env, { cmd: ["sleep", "1000"], resources: { memoryBytes: limit, pidsLimit: 50 } });
    const config = JSON.parse(await readFile(env.rt.paths.container(id).config, "utf8"));
    expect(config.linux.resources.memory.limit).toBe(limit);
    expect(config.linux.cgroupsPath).toBe(`/berth/${env.node}/${id}`);
    // cgroup v1 (this project's hosts) or v2.
    const cg = existsSync("/sys/fs/cgroup/memory")
      ? `/sys/fs/cgroup/memory/berth/${env.node}/${id}/memory.limit_in_bytes`
      : `/sys/fs/cgroup/berth/${env.node}/${id}/memory.max`;
    expect(Number(readFileSync(cg, "utf8"))).toBe(limit);
  });

  it("given a 16 MiB limit, when the process allocates more, then exit 137 with oomKilled", async () => {
    const env = await fresh();
    const { id } = await run(env, {
      cmd: ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
      resources: { memoryBytes: 16 * 1024 * 1024 },
    });
    expect(await env.rt.waitExit(id, 20_000)).toMatchObject({ exitCode: 137, oomKilled: true });
  });

  it("given a container that ran, when cleaned up, then no mount, no conmon, no dir, no exit file; twice is fine", async () => {
    const env = await fresh();
    const { id, conmonPid } = await run(env, { cmd: ["sleep", "1000"] });
    const cp = env.rt.paths.container(id);
    expect(mountinfo()).toContain(cp.rootfs);
    await env.rt.cleanup(id);
    expect(mountinfo()).not.toContain(cp.rootfs);
    expect(alive(conmonPid)).toBe(false);
    expect(existsSync(cp.dir)).toBe(false);
    expect(existsSync(env.rt.paths.exitFile(id))).toBe(false);
    expect(existsSync(env.rt.paths.socketLink(id))).toBe(false);
    expect(await env.rt.state(id)).toBeNull();
    await expect(env.rt.cleanup(id)).resolves.toBeUndefined();
  });

  it("given an exited container, when started again, then a new run with the stale exit file gone", async () => {
    const env = await fresh();
    const { id, pid } = await run(env, { cmd: ["sh", "-c", "test -f /tmp/again && sleep 1000; touch /tmp/again; exit 3"] });
    expect((await env.rt.waitExit(id, 10_000))?.exitCode).toBe(3);
    const second = await env.rt.start(id);
    expect(second.pid).not.toBe(pid);
    // The upper dir survived the restart (touch happened), so this run sleeps.
    await sleep(300);
    expect(await env.rt.readExit(id)).toBeNull();
    expect((await env.rt.state(id))?.status).toBe("running");
  });

  it("given a non-root user, when run, then it runs as that user and can use the filesystem", async () => {
    const env = await fresh();
    const { id } = await run(env, { user: "1000:1000", cmd: ["sh", "-c", "id -u; ls / >/dev/null && echo ok; touch /tmp/w && echo w"] });
    expect((await env.rt.waitExit(id, 10_000))?.exitCode).toBe(0);
    expect((await env.rt.logs(id)).map((l) => l.text)).toEqual(["1000", "ok", "w"]);
  });

  it("given a missing executable, when started, then RuntimeFailure in runc's own words", async () => {
    const env = await fresh();
    await expect(run(env, { entrypoint: ["/no/such/binary"] })).rejects.toMatchObject({
      code: "RuntimeError",
      message: expect.stringMatching(/no such file or directory/),
    });
  });

  it("given exits, when watched, then the callback fires once per exit file", async () => {
    const env = await fresh();
    const seen: [string, number][] = [];
    const stop = env.rt.watchExits((id, e) => seen.push([id, e.exitCode]), { pollMs: 100 });
    try {
      const a = await run(env, { cmd: ["sh", "-c", "exit 4"] }, "a");
      const b = await run(env, { cmd: ["sh", "-c", "exit 5"] }, "b");
      await until(() => seen.length, (n) => n >= 2);
      await sleep(400);
      expect(seen.sort()).toEqual([[a.id, 4], [b.id, 5]].sort());
    } finally {
      stop();
    }
  });

  it("given two data roots (one long), when the same container name runs in both, then nothing collides", async () => {
    const a = await fresh();
    const b = await fresh(24);
    const ca = await run(a, { cmd: ["sleep", "1000"] }, "same");
    const cb = await run(b, { cmd: ["sleep", "1000"] }, "same");
    expect(a.rt.paths.runcRoot).not.toBe(b.rt.paths.runcRoot);
    expect(a.rt.paths.socketDir).not.toBe(b.rt.paths.socketDir);
    expect((await a.rt.list()).map((s) => s.id)).toEqual([ca.id]);
    expect((await b.rt.list()).map((s) => s.id)).toEqual([cb.id]);
    // conmon's attach socket for a 64-hex id under a long data root still fits sun_path.
    const sock = b.rt.paths.attachSocket(cb.id);
    expect(Buffer.byteLength(sock)).toBeLessThanOrEqual(UNIX_PATH_MAX);
    expect((await stat(sock)).isSocket()).toBe(true);
    expect(b.root.length).toBeGreaterThanOrEqual(40);
  });
});

describe.skipIf(missing.length > 0 && !CI)("image store", () => {
  beforeAll(() => {
    if (missing.length) throw new Error(`prerequisites missing: ${missing.join(", ")}`);
  });

  it("given the busybox archive, when imported twice, then one record, resolvable by short name and digest, rootfs reused", async () => {
    const root = await mkdtemp("/tmp/berth-img-");
    try {
      const store = new ImageStore({ dataRoot: root, log });
      const a = await store.import(`oci-archive:${ARCHIVE}`);
      expect(a).toMatchObject({ name: "busybox:latest", config: { cmd: ["sh"] } });
      expect(a.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
      expect(existsSync(`${a.rootfs}/bin/sh`)).toBe(true);
      const mtime = (await stat(a.rootfs)).mtimeMs;
      const b = await store.import(`oci-archive:${ARCHIVE}`, "busybox");
      expect(b.rootfs).toBe(a.rootfs);
      expect((await stat(a.rootfs)).mtimeMs).toBe(mtime);
      await store.import(`oci-archive:${ARCHIVE}`, "other/tool:v1");
      expect((await store.list()).map((r) => r.name).sort()).toEqual(["busybox:latest", "other/tool:v1"]);
      expect((await store.resolve("busybox"))?.digest).toBe(a.digest);
      expect((await store.resolve(a.digest))?.digest).toBe(a.digest);
      expect(await store.resolve("nope")).toBeNull();
      // A fresh store object reads the persisted index.
      expect((await new ImageStore({ dataRoot: root, log }).resolve("busybox:latest"))?.digest).toBe(a.digest);
      await store.remove("other/tool:v1");
      expect(existsSync(a.rootfs)).toBe(true); // still used by busybox:latest
      await store.remove("busybox");
      expect(await store.list()).toEqual([]);
      expect(existsSync(a.rootfs)).toBe(false);
      await expect(store.remove("busybox")).rejects.toMatchObject({ code: "NotFound" });
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("given bad sources, when imported, then InvalidArgument or NotFound, never a crash", async () => {
    const root = await mkdtemp("/tmp/berth-img-");
    try {
      const store = new ImageStore({ dataRoot: root, log });
      for (const s of ["docker://busybox", "oci-archive:relative.tar", "oci-archive:/a/../b.tar", "oci-archive:/x.tar\n", "busybox"]) {
        await expect(store.import(s)).rejects.toMatchObject({ code: "InvalidArgument" });
      }
      await expect(store.import(`oci-archive:${ARCHIVE}`, "Bad Name")).rejects.toMatchObject({ code: "InvalidArgument" });
      await expect(store.import("oci-archive:/no/such/archive.tar")).rejects.toMatchObject({ code: "NotFound" });
      await expect(store.import("docker-archive:/no/such/archive.tar")).rejects.toMatchObject({ code: "NotFound" });
      await expect(store.import("oci:/no/such/dir:latest")).rejects.toMatchObject({ code: "NotFound" });
      expect(await store.list()).toEqual([]);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

