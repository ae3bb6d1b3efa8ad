// In-place upgrade and rollback on the real stack (issue 8's stories 1–5 and 7): busybox:latest,
// busybox:v2 and busybox:broken are real OCI images built by the setup from busybox-static;
// runc, conmon, overlayfs and the CNI bridge do the work.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing, UPGRADE_IMAGES } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "upgrade images").length > 0;

type C = {
  id: string; name: string; state: string; pid: number | null; ip: string | null; image: string; imageDigest: string;
  revision: number; previous: { revision: number; image: string } | null; labels: Record<string, string>;
  restartPolicy: { name: string }; pending: string | null; version: number; health: string; lastError: string | null;
  spec: { cmd?: string[]; env?: string[]; mounts?: { type: string; source?: string; target: string }[]; resources?: Record<string, number> };
};
type Ev = { type: string; seq: number; data: Record<string, unknown> };

describe.skipIf(skip)("upgrade in place on the real stack", () => {
  let d: TestDaemon;
  let hostDir: string;
  const third = 100 + Math.floor(Math.random() * 150);

  const get = (ref: string) => d.get<C>(`/v1/containers/${ref}`);
  const events = async (ref: string) => (await d.get<{ events: Ev[] }>(`/v1/containers/${ref}/events`)).events;
  const exec = async (ref: string, cmd: string[]) => {
    const r = await d.cmd<{ exitCode: number; stdout: string; stderr: string }>("container.exec", { id: ref, cmd, timeoutSec: 20 });
    expect(r.error).toBeUndefined();
    return r.result!;
  };
  const sh = async (ref: string, script: string) => (await exec(ref, ["sh", "-c", script])).stdout;
  const run = async (spec: Record<string, unknown>) => {
    const r = await d.cmd<{ id: string }>("container.run", { image: "busybox:latest", stopTimeoutSec: 1, ...spec });
    expect(r.error).toBeUndefined();
    return r.result!.id;
  };
  const upgrade = (body: Record<string, unknown>) => d.cmd<{ id: string; state: string; image: string; revision: number }>("container.upgrade", body, 120_000);

  beforeAll(async () => {
    d = await startTestDaemon({ subnet: `10.89.${third}.0/24` });
    for (const [name, path] of Object.entries(UPGRADE_IMAGES)) {
      const r = await d.cmd("image.import", { source: `oci-archive:${path}`, name });
      expect(r.error).toBeUndefined();
    }
    hostDir = mkdtempSync(join(tmpdir(), "berth-upg-"));
  });
  afterAll(async () => {
    await d?.destroy();
    rmSync(hostDir, { recursive: true, force: true });
  });

  it("keeps id, name, IP, volumes, restart policy, env and labels; takes the new image's env, labels, volume and layer; a fresh rw layer", async () => {
    const id = await run({
      name: "web",
      cmd: ["sh", "-c", "exec sleep 1000"],
      env: ["MODE=prod"],
      labels: { team: "a" },
      restartPolicy: { name: "always" },
      network: { ip: `10.89.${third}.15` },
      mounts: [{ type: "volume", source: `data-${third}`, target: "/data" }, { type: "volume", target: "/anon" }],
      healthcheck: { test: ["CMD", "true"], intervalMs: 300, retries: 2 },
    });
    await sh("web", "echo kept > /data/file; echo anon > /anon/file; echo gone > /root/rw-change");
    const before = await get("web");
    expect(before).toMatchObject({ ip: `10.89.${third}.15`, revision: 0, previous: null, image: "busybox:latest" });

    const r = await upgrade({ id: "web", image: "busybox:v2", healthGateSec: 2 });
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ id, state: "running", image: "busybox:v2", revision: 1 });

    const after = await get("web");
    expect(after).toMatchObject({ id, name: "web", state: "running", ip: `10.89.${third}.15`, revision: 1, pending: null, restartPolicy: { name: "always" } });
    expect(after.previous).toMatchObject({ revision: 0, image: "busybox:latest" });
    expect(after.pid).not.toBe(before.pid);
    expect(alive(before.pid!)).toBe(false);
    expect(after.labels).toEqual({ team: "a", "org.berth.release": "v2", "org.berth.flavour": "demo" });
    // The container's own command is kept (it differs from the old image's `sh`).
    expect(after.spec.cmd).toEqual(["sh", "-c", "exec sleep 1000"]);
    expect(await sh("web", "cat /data/file /anon/file; cat /etc/berth-release; test -e /root/rw-change && echo rw-kept || echo rw-fresh")).toBe("kept\nanon\nv2\nrw-fresh\n");
    const env = await sh("web", "env");
    expect(env).toMatch(/^MODE=prod$/m);
    expect(env).toMatch(/^RELEASE=v2$/m);
    expect(env).toMatch(/^GREETING=hello$/m);
    // The new image's VOLUME /cache is a new anonymous volume.
    expect(after.spec.mounts?.find((m) => m.target === "/cache")).toMatchObject({ type: "volume" });
    expect(await sh("web", "grep -c ' /cache ' /proc/mounts")).toBe("1\n");
    expect(await sh("web", "ip -4 -o addr show eth0")).toContain(`10.89.${third}.15/`);

    const evs = await events("web");
    const up = evs.find((e) => e.type === "ContainerUpgraded")!;
    expect(up.data).toMatchObject({ fromImage: "busybox:latest", fromDigest: before.imageDigest, toImage: "busybox:v2", toDigest: after.imageDigest, revision: 1 });
    expect(evs.filter((e) => e.type === "ContainerRevisionActivated")).toHaveLength(1);
    // Time travel: the old image before the upgrade's intent, the new one after its outcome.
    const intent = evs.find((e) => e.type === "ContainerUpgradeRequested")!;
    const at = async (seq: number) => (await d.get<{ containers: C[] }>(`/v1/state?at=${seq}`)).containers.find((c) => c.id === id)!;
    expect((await at(intent.seq - 1)).image).toBe("busybox:latest");
    expect((await at(up.seq)).image).toBe("busybox:v2");

    // Story 4: back to revision 0 with its rw layer as it was; a second rollback is refused.
    const rb = await d.cmd<{ image: string; revision: number; state: string }>("container.rollback", { id: "web" }, 60_000);
    expect(rb.error).toBeUndefined();
    expect(rb.result).toMatchObject({ image: "busybox:latest", revision: 0, state: "running" });
    const back = await get("web");
    expect(back).toMatchObject({ ip: `10.89.${third}.15`, revision: 0, previous: null, labels: { team: "a" } });
    expect(await sh("web", "cat /root/rw-change /data/file; test -e /etc/berth-release && echo v2 || echo latest")).toBe("gone\nkept\nlatest\n");
    const rolled = (await events("web")).filter((e) => e.type === "ContainerUpgradeRolledBack");
    expect(rolled.map((e) => e.data)).toEqual([{ reason: "requested", revision: 0, image: "busybox:latest", imageDigest: before.imageDigest, fromRevision: 1 }]);
    const again = await d.cmd("container.rollback", { id: "web" });
    expect(again.error?.code).toBe("Conflict");
    expect(again.error?.message).toMatch(/no previous revision/);
    // Only the active revision's rw layer is left on the host.
    const cdir = join(d.dataRoot, "containers", id);
    await until(async () => !execFileSync("ls", [cdir], { encoding: "utf8" }).includes("rev-"), 5_000);
  });

  it("rolls back by itself when the new image's command does not start, keeping the old rw layer and IP", async () => {
    const id = await run({ name: "rb-start", cmd: ["sleep", "1000"] });
    await sh("rb-start", "echo mine > /root/change");
    const before = await get(id);
    const r = await upgrade({ id, image: "busybox:broken", healthGateSec: 2 });
    expect(r.error?.code).toBe("RuntimeError");
    expect(r.error?.message).toMatch(/rolled back to revision 0 \(busybox:latest\): start: .*no-such-server/);
    const c = await get(id);
    expect(c).toMatchObject({ state: "running", image: "busybox:latest", revision: 0, previous: null, ip: before.ip, pending: null });
    expect(c.pid).not.toBe(before.pid);
    expect(await sh(id, "cat /root/change")).toBe("mine\n");
    const types = (await events(id)).map((e) => e.type).filter((t) => !t.startsWith("ContainerExec"));
    expect(types.slice(types.indexOf("ContainerUpgradeRequested"))).toEqual([
      "ContainerUpgradeRequested", "ContainerExited", "ContainerRevisionActivated", "ContainerUpgradeFailed",
      "ContainerRevisionActivated", "ContainerStarted", "ContainerUpgradeRolledBack",
    ]);
  });

  it("rolls back when the new revision exits within its health gate", async () => {
    const id = await run({ name: "rb-exit", cmd: ["sleep", "1000"] });
    const r = await upgrade({ id, image: "busybox:v2", cmd: ["sh", "-c", "sleep 0.3; exit 3"], healthGateSec: 5 });
    expect(r.error?.message).toMatch(/exited with code 3 within its health gate/);
    expect(await get(id)).toMatchObject({ state: "running", image: "busybox:latest", revision: 0 });
    expect((await get(id)).spec.cmd).toEqual(["sleep", "1000"]);
  });

  it("rolls back when the new revision turns unhealthy within its health gate", async () => {
    // Healthy on busybox:latest, unhealthy on busybox:v2 (which has /etc/berth-release).
    const id = await run({ name: "rb-health", cmd: ["sleep", "1000"], healthcheck: { test: ["CMD-SHELL", "test ! -e /etc/berth-release"], intervalMs: 200, retries: 2 } });
    await until(async () => (await get(id)).health === "healthy", 10_000);
    const r = await upgrade({ id, image: "busybox:v2", healthGateSec: 20 });
    expect(r.error?.message).toMatch(/unhealthy within its health gate/);
    const c = await get(id);
    expect(c).toMatchObject({ state: "running", image: "busybox:latest", revision: 0 });
    await until(async () => (await get(id)).health === "healthy", 10_000);
  });

  it("upgrades a stopped container without starting it; the next start runs the new image; a paused one is refused", async () => {
    const id = await run({ name: "stopped", cmd: ["sleep", "1000"] });
    expect((await d.cmd("container.stop", { id, timeoutSec: 1 })).error).toBeUndefined();
    const r = await upgrade({ id, image: "busybox:v2", env: ["EXTRA=1"], labels: { tier: "db" }, resources: { memoryBytes: 64 * 1024 * 1024, cpus: 0.5 } });
    expect(r.result).toMatchObject({ state: "exited", image: "busybox:v2", revision: 1 });
    expect((await d.cmd("container.start", { id })).error).toBeUndefined();
    expect(await sh(id, "cat /etc/berth-release; echo $EXTRA")).toBe("v2\n1\n");
    // -m and --cpus in the same step: the new run's cgroup has them (v1 or v2, whichever the host has).
    const v1 = `/sys/fs/cgroup/memory/berth/${d.node}/${id}/memory.limit_in_bytes`;
    const mem = existsSync(v1) ? readFileSync(v1, "utf8") : readFileSync(`/sys/fs/cgroup/berth/${d.node}/${id}/memory.max`, "utf8");
    expect(mem.trim()).toBe(String(64 * 1024 * 1024));
    expect((await get(id)).spec).toMatchObject({ resources: { memoryBytes: 64 * 1024 * 1024, cpus: 0.5 } });
    expect((await get(id)).labels).toMatchObject({ tier: "db", "org.berth.release": "v2" });

    const p = await run({ name: "paused", cmd: ["sleep", "1000"] });
    expect((await d.cmd("container.pause", { id: p })).error).toBeUndefined();
    const refused = await upgrade({ id: p, image: "busybox:v2" });
    expect(refused.error?.code).toBe("Conflict");
    expect(refused.error?.message).toMatch(/paused; unpause it first/);
    expect((await d.cmd("container.unpause", { id: p })).error).toBeUndefined();
  });

  it("refuses bad upgrades with a clear error and changes nothing", async () => {
    const id = await run({ name: "bad", cmd: ["sleep", "1000"], mounts: [{ type: "bind", source: hostDir, target: "/cache" }] });
    const before = await get(id);
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ id, image: "nosuch:1" }, "NotFound", /no image 'nosuch:1'/],
      [{ id, image: "busybox:latest" }, "InvalidArgument", /image not changed/],
      [{ id, image: "busybox:v2", healthGateSec: -1 }, "InvalidArgument", /healthGateSec/],
      [{ id, image: "busybox:v2", healthGateSec: 99_999 }, "InvalidArgument", /healthGateSec/],
      [{ id, image: "busybox:v2", bogus: 1 }, "InvalidArgument", /unknown field 'bogus'/],
      // busybox:v2 declares VOLUME /cache, where this container binds a host dir.
      [{ id, image: "busybox:v2" }, "InvalidArgument", /declares a volume at \/cache, where the container has a bind mount/],
      [{ id: "nosuch-container", image: "busybox:v2" }, "NotFound", /./],
    ];
    for (const [body, code, msg] of cases) {
      const r = await upgrade(body);
      expect(r.error?.code, JSON.stringify(body)).toBe(code);
      expect(r.error?.message, JSON.stringify(body)).toMatch(msg);
    }
    expect((await d.cmd("container.rollback", { id })).error?.code).toBe("Conflict");
    const after = await get(id);
    expect(after).toMatchObject({ version: before.version, pid: before.pid, image: "busybox:latest", revision: 0 });

    // While an upgrade is in its health gate, any other command on the container is a Conflict.
    const ok = await run({ name: "busy", cmd: ["sleep", "1000"] });
    const slow = upgrade({ id: ok, image: "busybox:v2", healthGateSec: 4 });
    await until(async () => (await get(ok)).pending === "ContainerUpgradeRequested", 10_000);
    for (const [verb, body] of [["container.upgrade", { id: ok, image: "busybox:broken" }], ["container.stop", { id: ok }], ["container.rollback", { id: ok }]] as const) {
      const r = await d.cmd(verb, body);
      expect(r.error?.code, verb).toBe("Conflict");
      expect(r.error?.message, verb).toMatch(/busy: upgrade is in progress/);
    }
    expect((await slow).result).toMatchObject({ image: "busybox:v2", revision: 1 });
    // A container being removed cannot be upgraded (it is gone by the time anyone asks again).
    expect((await d.cmd("container.remove", { id: ok, force: true })).error).toBeUndefined();
    expect((await upgrade({ id: ok, image: "busybox:latest" })).error?.code).toBe("NotFound");
  });

  it("upgrades a pod member in the pod's namespaces without restarting the other members", async () => {
    expect((await d.cmd("pod.create", { name: `upg-pod-${third}` })).error).toBeUndefined();
    const a = await run({ name: "pod-a", pod: `upg-pod-${third}`, cmd: ["httpd", "-f", "-p", "8080", "-h", "/etc"] });
    const b = await run({ name: "pod-b", pod: `upg-pod-${third}`, cmd: ["sleep", "1000"] });
    const [ca, cb] = [await get(a), await get(b)];
    const r = await upgrade({ id: b, image: "busybox:v2", healthGateSec: 1 });
    expect(r.error).toBeUndefined();
    const [ca2, cb2] = [await get(a), await get(b)];
    expect(ca2.pid).toBe(ca.pid);
    expect(cb2).toMatchObject({ state: "running", image: "busybox:v2", ip: cb.ip });
    expect(cb2.pid).not.toBe(cb.pid);
    // The upgraded member still shares the pod's loopback with the other.
    expect(await sh(b, "wget -q -O - http://127.0.0.1:8080/passwd")).toContain("root:");
    expect((await d.cmd("pod.remove", { id: `upg-pod-${third}`, force: true })).error).toBeUndefined();
  });
});
