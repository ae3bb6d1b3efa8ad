// Pods on the real stack (issue 7's story 4): pinned net/ipc/uts namespaces shared by the
// members, one CNI attachment and IP, a published port, the pod's cgroup limiting its members, and
// pod stop/start/rm -f leaving nothing behind.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { freePort } from "../support/nats.js";
import { missing } from "../support/prereq.js";
import { until } from "../support/proc.js";
import { connectAs } from "../support/roles.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image", "cni").length > 0;

type Pod = { id: string; name: string; state: string; ip: string | null; containers: { id: string; name: string; state: string }[]; ports: unknown[] };
type C = { id: string; state: string; ip: string | null; pod: string | null; networkMode: string };

describe.skipIf(skip)("pods on the real stack", () => {
  let d: TestDaemon;
  let daemonNc: NatsConnection;
  let www: string;
  let hostPort = 0;
  let podId = "";
  const third = 100 + Math.floor(Math.random() * 150);
  const subnet = `10.89.${third}.0/24`;
  const exec = async (name: string, cmd: string[]) =>
    (await d.cmd<{ exitCode: number; stdout: string; stderr: string }>("container.exec", { id: name, cmd, timeoutSec: 20 })).result!;
  const pod = () => d.get<Pod>("/v1/pods/app");
  const lastSeq = async () => (await (await jetstreamManager(daemonNc)).streams.info("BERTH_EVENTS")).state.last_seq;

  beforeAll(async () => {
    d = await startTestDaemon({ subnet });
    daemonNc = await connectAs(d.dataRoot, "daemon");
    www = mkdtempSync(join(tmpdir(), "berth-www-"));
    writeFileSync(join(www, "index.html"), "from a\n");
  });
  afterAll(async () => {
    await daemonNc?.close();
    if (d) for (const p of (await d.get<{ pods: Pod[] }>("/v1/pods")).pods) await d.cmd("pod.remove", { id: p.id, force: true });
    await d?.destroy();
    rmSync(www, { recursive: true, force: true });
  });

  it("creates a pod whose members share its network, IPC and UTS namespaces, its IP, its port and its cgroup", async () => {
    hostPort = await freePort();
    const c = await d.cmd<{ id: string; name: string }>("pod.create", {
      name: "app", network: { ports: [{ hostPort, containerPort: 90, hostIp: "127.0.0.1" }] }, resources: { memoryBytes: 256 * 1024 * 1024 },
    });
    expect(c.error).toBeUndefined();
    podId = c.result!.id;
    expect((await d.cmd("container.run", { name: "a", pod: "app", image: "busybox:latest", cmd: ["httpd", "-f", "-p", "90", "-h", "/www"], mounts: [{ type: "bind", source: www, target: "/www", readOnly: true }] })).error).toBeUndefined();
    expect((await d.cmd("container.run", { name: "b", pod: "app", image: "busybox:latest", cmd: ["sleep", "1000"] })).error).toBeUndefined();

    // b reaches a on the pod's loopback; the host reaches a through the pod's published port.
    const fromB = await until(async () => {
      const r = await exec("b", ["wget", "-qO-", "http://127.0.0.1:90/"]);
      return r.exitCode === 0 && r.stdout;
    }, 10_000);
    expect(fromB).toBe("from a\n");
    const fromHost = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => null);
      return r?.ok && (await r.text());
    }, 10_000);
    expect(fromHost).toBe("from a\n");

    // One IP, one hostname (the pod's), the same ipc and uts namespaces.
    const [a, b] = await Promise.all([d.get<C>("/v1/containers/a"), d.get<C>("/v1/containers/b")]);
    expect(a).toMatchObject({ pod: podId, networkMode: "pod" });
    expect(a.ip).toMatch(new RegExp(`^10\\.89\\.${third}\\.`));
    expect(b.ip).toBe(a.ip);
    for (const n of ["a", "b"]) expect((await exec(n, ["hostname"])).stdout.trim()).toBe("app");
    const ns = async (n: string) => (await exec(n, ["readlink", "/proc/self/ns/ipc", "/proc/self/ns/uts", "/proc/self/ns/net"])).stdout;
    expect(await ns("a")).toBe(await ns("b"));
    expect((await exec("b", ["cat", "/etc/hosts"])).stdout).toContain(`${a.ip}\tapp b`);

    // The members live under the pod's cgroup, which carries the pod's limit.
    const cgroup = readFileSync(`/proc/${(await d.get<{ pid: number }>("/v1/containers/a")).pid}/cgroup`, "utf8");
    expect(cgroup).toContain(`/berth/${d.node}/pod-${podId}/`);
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    const limit = v2
      ? readFileSync(`/sys/fs/cgroup/berth/${d.node}/pod-${podId}/memory.max`, "utf8")
      : readFileSync(`/sys/fs/cgroup/memory/berth/${d.node}/pod-${podId}/memory.limit_in_bytes`, "utf8");
    expect(limit.trim()).toBe(String(256 * 1024 * 1024));

    const p = await pod();
    expect(p).toMatchObject({ name: "app", state: "running", ip: a.ip });
    expect(p.containers.map((m) => m.name)).toEqual(["a", "b"]);
  });

  it("stops and starts every member with the pod, keeping its IP", async () => {
    const ip = (await pod()).ip;
    const stop = await d.cmd<Pod>("pod.stop", { id: "app", timeoutSec: 1 });
    expect(stop.error).toBeUndefined();
    expect(stop.result!.state).toBe("exited");
    expect(stop.result!.containers.every((m) => m.state === "exited")).toBe(true);
    const start = await d.cmd<Pod>("pod.start", { id: "app" });
    expect(start.error).toBeUndefined();
    expect(start.result).toMatchObject({ state: "running", ip });
    expect(start.result!.containers.every((m) => m.state === "running")).toBe(true);
    const fromHost = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => null);
      return r?.ok && (await r.text());
    }, 10_000);
    expect(fromHost).toBe("from a\n");
  });

  it("restarts a member by its restart policy into the pod's namespaces, with the pod's IP", async () => {
    expect((await d.cmd("container.run", { name: "c", pod: "app", image: "busybox:latest", cmd: ["sleep", "1000"], restartPolicy: { name: "always", backoff: { initialMs: 100, maxMs: 200 } } })).error).toBeUndefined();
    const before = await d.get<C & { pid: number }>("/v1/containers/c");
    process.kill(before.pid, "SIGKILL");
    const after = await until(async () => {
      const c = await d.get<C & { pid: number; restartCount: number }>("/v1/containers/c");
      return c.state === "running" && c.pid !== before.pid && c;
    }, 10_000);
    expect(after.ip).toBe((await pod()).ip);
    expect((await exec("c", ["wget", "-qO-", "http://127.0.0.1:90/"])).stdout).toBe("from a\n");
    expect((await d.cmd("container.remove", { id: "c", force: true })).ok).toBe(true);
  });

  it("refuses to remove a pod that has members without force, and changes nothing", async () => {
    const seq = await lastSeq();
    const r = await d.cmd("pod.remove", { id: "app" });
    expect(r.error?.code).toBe("Conflict");
    expect(r.error?.message).toMatch(/a, b/);
    expect(await lastSeq()).toBe(seq);
    expect((await pod()).state).toBe("running");
  });

  it("removes the members, the namespaces, the attachment, the lease and the cgroup with rm -f", async () => {
    const root = d.dataRoot;
    const r = await d.cmd("pod.remove", { id: "app", force: true });
    expect(r.error).toBeUndefined();
    expect((await d.http("/v1/pods/app")).status).toBe(404);
    expect((await d.get<{ containers: C[] }>("/v1/containers?all=true")).containers).toEqual([]);
    expect(existsSync(join(root, "sandboxes", podId))).toBe(false);
    expect(readdirSync(join(root, "network", "attachments"))).toEqual([]);
    const leases = readdirSync(join(root, "network", "leases")).flatMap((n) => readdirSync(join(root, "network", "leases", n)));
    expect(leases.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))).toEqual([]);
    const v2 = existsSync("/sys/fs/cgroup/cgroup.controllers");
    expect(existsSync(v2 ? `/sys/fs/cgroup/berth/${d.node}/pod-${podId}` : `/sys/fs/cgroup/memory/berth/${d.node}/pod-${podId}`)).toBe(false);
    const { events } = await d.get<{ events: { type: string; subject: string }[] }>("/v1/events?type=PodCreated,PodStarted,PodStopped,PodRemoved");
    expect(events.filter((e) => e.subject === `berth.ev.pod.${podId}`).map((e) => e.type)).toEqual(["PodCreated", "PodStopped", "PodStarted", "PodRemoved"]);
  });

  it.each([
    ["a member with its own network", { name: "m1", pod: "app2", image: "busybox:latest", network: { mode: "bridge" } }, "InvalidArgument", /takes its network from the pod/],
    ["a member with its own hostname", { name: "m2", pod: "app2", image: "busybox:latest", hostname: "x" }, "InvalidArgument", /hostname/],
    ["--pod naming no pod", { name: "m3", pod: "nopod", image: "busybox:latest" }, "NotFound", /no pod 'nopod'/],
  ])("refuses %s, and nothing changes", async (_what, body, code, msg) => {
    if (!(await d.http("/v1/pods/app2")).ok) expect((await d.cmd("pod.create", { name: "app2" })).error).toBeUndefined();
    const seq = await lastSeq();
    const r = await d.cmd("container.create", body);
    expect(r.error?.code).toBe(code);
    expect(r.error?.message).toMatch(msg);
    expect(await lastSeq()).toBe(seq);
  });

  it.each([
    ["share pid", { name: "p1", share: ["net", "pid"] }, /'pid' is not supported/],
    ["share without net", { name: "p2", share: ["ipc"] }, /must include 'net'/],
    ["the host's network", { name: "p3", network: { mode: "host" } }, /host's network/],
    ["an IP outside the subnet", { name: "p4", network: { ip: "192.0.2.7" } }, /outside the node's subnet/],
    ["an unknown field", { name: "p5", hostname: "x" }, /unknown field/],
  ])("refuses a pod with %s, and nothing changes", async (_what, body, msg) => {
    const seq = await lastSeq();
    const sandboxes = readdirSync(join(d.dataRoot, "sandboxes"));
    const r = await d.cmd("pod.create", body);
    expect(r.error?.code).toBe("InvalidArgument");
    expect(r.error?.message).toMatch(msg);
    expect(await lastSeq()).toBe(seq);
    expect(readdirSync(join(d.dataRoot, "sandboxes"))).toEqual(sandboxes);
  });

  it("refuses a pod name in use with AlreadyExists", async () => {
    if (!(await d.http("/v1/pods/app2")).ok) expect((await d.cmd("pod.create", { name: "app2" })).error).toBeUndefined();
    expect((await d.cmd("pod.create", { name: "app2" })).error?.code).toBe("AlreadyExists");
  });
});
