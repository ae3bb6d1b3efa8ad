// Bridge networking on the real stack (issue 7's stories 1, 2, 3 and 5): the CNI plugins from
// /usr/lib/cni, iptables, veths and pinned namespaces, with traffic from the host over loopback and
// between containers inside the daemon's own bridge only.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { freePort } from "../support/nats.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";
import { connectAs } from "../support/roles.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image", "cni").length > 0;

type C = { id: string; name: string; state: string; pid: number | null; ip: string | null; ports: unknown[]; networkMode: string; restartCount: number };

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8" });
const iptablesNat = () => sh("iptables-save", ["-t", "nat"]);
const links = () => sh("ip", ["-o", "link", "show"]);

describe.skipIf(skip)("bridge networking on the real stack", () => {
  let d: TestDaemon;
  let www: string;
  // A /24 of its own, so the test knows which IPs are the node's.
  const third = 100 + Math.floor(Math.random() * 150);
  const subnet = `10.89.${third}.0/24`;
  const ipOf = (host: number) => `10.89.${third}.${host}`;
  const ids: Record<string, string> = {};

  const run = async (name: string, extra: Record<string, unknown>) => {
    const r = await d.cmd<{ id: string; state: string; pid: number }>("container.run", { name, image: "busybox:latest", ...extra });
    expect(r.error, name).toBeUndefined();
    ids[name] = r.result!.id;
    return r.result!;
  };
  const get = (name: string) => d.get<C>(`/v1/containers/${ids[name] ?? name}`);
  const exec = async (name: string, cmd: string[]) =>
    (await d.cmd<{ exitCode: number; stdout: string; stderr: string }>("container.exec", { id: name, cmd, timeoutSec: 20 })).result!;

  beforeAll(async () => {
    d = await startTestDaemon({ subnet });
    www = mkdtempSync(join(tmpdir(), "berth-www-"));
    writeFileSync(join(www, "index.html"), "hello from berth\n");
  });
  afterAll(async () => {
    await d?.destroy();
    rmSync(www, { recursive: true, force: true });
  });

  it("publishes a port on the host's loopback, and ps/inspect show the IP and ports (bridge is the default)", async () => {
    const hostPort = await freePort();
    await run("web", {
      cmd: ["httpd", "-f", "-p", "80", "-h", "/www"],
      mounts: [{ type: "bind", source: www, target: "/www", readOnly: true }],
      network: { ports: [{ hostPort, containerPort: 80, hostIp: "127.0.0.1" }] },
    });
    const body = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${hostPort}/`).catch(() => null);
      return r?.ok && (await r.text());
    }, 10_000);
    expect(body).toBe("hello from berth\n");
    const c = await get("web");
    expect(c).toMatchObject({ networkMode: "bridge", ports: [{ hostPort, containerPort: 80, hostIp: "127.0.0.1" }] });
    expect(c.ip).toMatch(new RegExp(`^10\\.89\\.${third}\\.\\d+$`));
    const { containers } = await d.get<{ containers: C[] }>("/v1/containers");
    expect(containers.find((x) => x.name === "web")?.ip).toBe(c.ip);
    // The container's own files.
    const files = await exec("web", ["cat", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]);
    expect(files.stdout).toContain(`web\n`);
    expect(files.stdout).toContain(`${c.ip}\tweb`);
    expect(files.stdout).toMatch(/nameserver /);
    expect(files.stdout).not.toMatch(/nameserver 127\./);
  });

  it("lets two containers reach each other by IP, and a static IP stays across stop/start, a policy restart and a daemon restart", async () => {
    const db = await run("db", {
      cmd: ["httpd", "-f", "-p", "8080", "-h", "/www"],
      mounts: [{ type: "bind", source: www, target: "/www", readOnly: true }],
      network: { ip: ipOf(20) },
      restartPolicy: { name: "always", backoff: { initialMs: 100, maxMs: 200 } },
      stopTimeoutSec: 1,
    });
    expect((await get("db")).ip).toBe(ipOf(20));
    const fromWeb = await until(async () => {
      const r = await exec("web", ["wget", "-qO-", `http://${ipOf(20)}:8080/`]);
      return r.exitCode === 0 && r.stdout;
    }, 10_000);
    expect(fromWeb).toBe("hello from berth\n");
    const webIp = (await get("web")).ip!;
    expect((await exec("db", ["ping", "-c", "1", "-W", "3", webIp])).exitCode).toBe(0);

    // A port published on every host address is reached from another container through the
    // host (the bridge's gateway address): portmap's DNAT, with hairpin masquerade.
    const allPort = await freePort();
    await run("pub", {
      cmd: ["httpd", "-f", "-p", "80", "-h", "/www"],
      mounts: [{ type: "bind", source: www, target: "/www", readOnly: true }],
      network: { ports: [{ hostPort: allPort, containerPort: 80 }] },
    });
    const viaHost = await until(async () => {
      const r = await exec("web", ["wget", "-qO-", `http://${ipOf(1)}:${allPort}/`]);
      return r.exitCode === 0 && r.stdout;
    }, 10_000);
    expect(viaHost).toBe("hello from berth\n");
    expect((await d.cmd("container.remove", { id: "pub", force: true })).ok).toBe(true);
    delete ids.pub;

    expect((await d.cmd("container.stop", { id: "db", timeoutSec: 1 })).ok).toBe(true);
    expect((await d.cmd("container.start", { id: "db" })).ok).toBe(true);
    expect((await get("db")).ip).toBe(ipOf(20));

    // The restart policy brings it back after its process dies: same IP, served again.
    const pid = (await get("db")).pid!;
    process.kill(pid, "SIGKILL");
    const again = await until(async () => {
      const c = await get("db");
      return c.state === "running" && c.pid !== pid && c;
    }, 10_000);
    expect(again.ip).toBe(ipOf(20));
    expect(again.restartCount).toBeGreaterThanOrEqual(1);

    // The daemon goes and comes back (containers keep running): nothing about the network changes.
    const root = d.dataRoot;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort, subnet });
    expect(await get("db")).toMatchObject({ state: "running", ip: ipOf(20) });
    expect((await exec("web", ["wget", "-qO-", `http://${ipOf(20)}:8080/`])).stdout).toBe("hello from berth\n");
    expect(db.pid).toBeGreaterThan(0);
  });

  it("after a host reboot (processes, mounts, netns, veths and the bridge gone) starts the container again with the same IP", async () => {
    const before = await get("db");
    const root = d.dataRoot;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    const bridge = (JSON.parse(readFileSync(join(root, "network", "network.json"), "utf8")) as { bridge: string }).bridge;
    await d.stop();
    // The reboot: db's conmon and process killed, its rootfs and pinned netns unmounted (its veth
    // goes with the netns), the bridge deleted and NAT rules of ours flushed, a new boot id.
    const dir = join(root, "containers", ids.db);
    process.kill(Number(readFileSync(join(dir, "conmon.pid"), "utf8")), "SIGKILL");
    process.kill(before.pid!, "SIGKILL");
    await until(async () => !alive(before.pid!));
    for (const name of ["db", "web"]) {
      const cdir = join(root, "containers", ids[name]);
      if (name === "web") {
        process.kill(Number(readFileSync(join(cdir, "conmon.pid"), "utf8")), "SIGKILL");
        const wpid = Number(readFileSync(join(cdir, "ctr.pid"), "utf8"));
        process.kill(wpid, "SIGKILL");
        await until(async () => !alive(wpid));
      }
      execFileSync("umount", [join(cdir, "rootfs")]);
      execFileSync("umount", [join(root, "sandboxes", ids[name], "net")]);
    }
    execFileSync("ip", ["link", "del", bridge]);
    const bootFile = join(root, "boot_id");
    writeFileSync(bootFile, "rebooted-" + Date.now());
    process.env.BERTH_BOOT_ID_FILE = bootFile;
    try {
      d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort, subnet });
      const c = await until(async () => {
        const x = await get("db");
        return x.state === "running" && x.pid !== before.pid && x;
      }, 15_000);
      expect(c.ip).toBe(ipOf(20));
      expect(links()).toContain(bridge);
      // web had no restart policy: it stays exited, and keeps its IP for its next start.
      const web = await until(async () => {
        const x = await get("web");
        return x.state === "exited" && x;
      }, 10_000);
      expect((await d.cmd("container.start", { id: "web" })).ok).toBe(true);
      expect((await get("web")).ip).toBe(web.ip);
      const r = await until(async () => {
        const x = await exec("web", ["wget", "-qO-", `http://${ipOf(20)}:8080/`]);
        return x.exitCode === 0 && x.stdout;
      }, 10_000);
      expect(r).toBe("hello from berth\n");
    } finally {
      delete process.env.BERTH_BOOT_ID_FILE;
    }
  });

  it("leaves nothing behind after every container is removed and the daemon stops", async () => {
    const root = d.dataRoot;
    const { containers } = await d.get<{ containers: C[] }>("/v1/containers?all=true");
    const netns = containers.map((c) => join(root, "sandboxes", c.id, "net"));
    for (const c of containers) expect((await d.cmd("container.remove", { id: c.id, force: true })).ok).toBe(true);
    const bridge = (JSON.parse(readFileSync(join(root, "network", "network.json"), "utf8")) as { bridge: string }).bridge;
    const events = await d.get<{ events: { type: string; data: { ip?: string } }[] }>(`/v1/containers/${ids.db}/events`);
    expect(events.events.find((e) => e.type === "ContainerNetworkDetached")?.data.ip).toBe(ipOf(20));
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    const leases = readdirSync(join(root, "network", "leases")).flatMap((n) => readdirSync(join(root, "network", "leases", n)));
    expect(leases.filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f))).toEqual([]);
    expect(readdirSync(join(root, "network", "attachments"))).toEqual([]);
    for (const f of netns) expect(existsSync(f)).toBe(false);
    expect(links()).not.toContain(bridge);
    expect(links()).not.toContain(`master ${bridge}`);
    const nat = iptablesNat();
    expect(nat).not.toContain(subnet);
    for (const id of Object.values(ids)) expect(nat).not.toContain(id.slice(0, 12));
    // The daemon's network is kept for its next start.
    d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort, subnet });
  });
});

describe.skipIf(skip)("bad network input", () => {
  let d: TestDaemon;
  let daemonNc: NatsConnection;
  let holder: Server;
  let heldPort = 0;
  const third = 100 + Math.floor(Math.random() * 150);
  const subnet = `10.89.${third}.0/24`;
  const lastSeq = async () => (await (await jetstreamManager(daemonNc)).streams.info("BERTH_EVENTS")).state.last_seq;
  const netName = () => (JSON.parse(readFileSync(join(d.dataRoot, "network", "network.json"), "utf8")) as { name: string }).name;
  const hostState = () => ({
    leases: readdirSync(join(d.dataRoot, "network", "leases")).flatMap((n) => readdirSync(join(d.dataRoot, "network", "leases", n))).sort(),
    sandboxes: readdirSync(join(d.dataRoot, "sandboxes")).sort(),
    containers: readdirSync(join(d.dataRoot, "containers")).sort(),
    // This daemon's rules only (they name its CNI network or its subnet): other tests run alongside.
    nat: iptablesNat().split("\n").filter((l) => l.startsWith("-A") && (l.includes(netName()) || l.includes(`10.89.${third}.`))).sort().join("\n"),
  });

  beforeAll(async () => {
    d = await startTestDaemon({ subnet });
    daemonNc = await connectAs(d.dataRoot, "daemon");
    const r = await d.cmd("container.run", { name: "owner", image: "busybox:latest", cmd: ["sleep", "1000"], network: { ip: `10.89.${third}.30`, ports: [{ hostPort: 18090 + third, containerPort: 80, hostIp: "127.0.0.1" }] } });
    expect(r.error).toBeUndefined();
    heldPort = await freePort();
    holder = createServer().listen(heldPort, "127.0.0.1");
    await new Promise((res) => holder.once("listening", res));
  });
  afterAll(async () => {
    holder?.close();
    await daemonNc?.close();
    await d?.destroy();
  });

  const base = { image: "busybox:latest", cmd: ["true"] };
  it.each([
    ["an IP outside the subnet", { network: { ip: "10.1.2.3" } }, "InvalidArgument", /outside the node's subnet/],
    ["the network address", { network: { ip: "NET.0" } }, "InvalidArgument", /network address/],
    ["the broadcast address", { network: { ip: "NET.255" } }, "InvalidArgument", /broadcast address/],
    ["the gateway", { network: { ip: "NET.1" } }, "InvalidArgument", /gateway/],
    ["an IP in use", { network: { ip: "NET.30" } }, "Conflict", /in use by container owner/],
    ["a malformed IP", { network: { ip: "10.89.1" } }, "InvalidArgument", /not an IPv4 address/],
    ["an IP with 999", { network: { ip: "10.89.999.4" } }, "InvalidArgument", /not an IPv4 address/],
    ["--ip with network none", { network: { mode: "none", ip: "NET.40" } }, "InvalidArgument", /needs network mode 'bridge'/],
    ["--ip with network host", { network: { mode: "host", ip: "NET.40" } }, "InvalidArgument", /needs network mode 'bridge'/],
    ["ports with network host", { network: { mode: "host", ports: [{ hostPort: 18000, containerPort: 80 }] } }, "InvalidArgument", /published ports need network mode 'bridge'/],
    ["host port 0", { network: { ports: [{ hostPort: 0, containerPort: 80 }] } }, "InvalidArgument", /hostPort/],
    ["container port 70000", { network: { ports: [{ hostPort: 18001, containerPort: 70000 }] } }, "InvalidArgument", /containerPort/],
    ["a bad protocol", { network: { ports: [{ hostPort: 18002, containerPort: 80, protocol: "sctp" }] } }, "InvalidArgument", /protocol/],
    ["a host port twice", { network: { ports: [{ hostPort: 18003, containerPort: 80 }, { hostPort: 18003, containerPort: 81 }] } }, "InvalidArgument", /published twice/],
    ["a host port another container publishes", { network: { ports: [{ hostPort: "OWNER", containerPort: 80 }] } }, "Conflict", /already published by container owner/],
    ["a host port a host process holds", { network: { ports: [{ hostPort: "HELD", containerPort: 80, hostIp: "127.0.0.1" }] } }, "Conflict", /in use by a process on the host/],
    ["a hostIp that is not the host's", { network: { ports: [{ hostPort: 18004, containerPort: 80, hostIp: "192.0.2.1" }] } }, "InvalidArgument", /not an address of this host/],
    ["a hostname that is no DNS label", { hostname: "a_b" }, "InvalidArgument", /hostname/],
  ])("%s is refused, and nothing changes in the log or on the host", async (_what, extra, code, msg) => {
    const body = JSON.parse(
      JSON.stringify({ ...base, ...extra })
        .replaceAll("NET.", `10.89.${third}.`)
        .replace('"OWNER"', String(18090 + third))
        .replace('"HELD"', String(heldPort)),
    );
    const seq = await lastSeq();
    const host = hostState();
    const r = await d.cmd("container.create", body);
    expect(r.error?.code).toBe(code);
    expect(r.error?.message).toMatch(msg);
    expect(await lastSeq()).toBe(seq);
    expect(hostState()).toEqual(host);
  });
});

describe.skipIf(skip)("two daemons on one machine", () => {
  let a: TestDaemon;
  let b: TestDaemon;
  beforeAll(async () => {
    a = await startTestDaemon();
    b = await startTestDaemon();
  });
  afterAll(async () => {
    await a?.destroy();
    await b?.destroy();
  });

  it("each has its own bridge, subnet and leases, and their containers run side by side", async () => {
    const net = (d: TestDaemon) => JSON.parse(readFileSync(join(d.dataRoot, "network", "network.json"), "utf8")) as { bridge: string; subnet: string; name: string };
    const [na, nb] = [net(a), net(b)];
    expect(na.bridge).not.toBe(nb.bridge);
    expect(na.subnet).not.toBe(nb.subnet);
    expect(na.name).not.toBe(nb.name);
    for (const d of [a, b]) {
      const r = await d.cmd<{ id: string }>("container.run", { name: "same-name", image: "busybox:latest", cmd: ["sleep", "1000"] });
      expect(r.error).toBeUndefined();
    }
    const ca = await a.get<C>("/v1/containers/same-name");
    const cb = await b.get<C>("/v1/containers/same-name");
    const inSubnet = (ip: string, subnet: string) => ip.split(".").slice(0, 3).join(".") === subnet.split(".").slice(0, 3).join(".");
    expect(inSubnet(ca.ip!, na.subnet)).toBe(true);
    expect(inSubnet(cb.ip!, nb.subnet)).toBe(true);
    expect(links()).toContain(na.bridge);
    expect(links()).toContain(nb.bridge);
    // Removing one daemon's container and stopping it leaves the other's network alone.
    expect((await a.cmd("container.remove", { id: "same-name", force: true })).ok).toBe(true);
    await a.stop();
    expect(links()).not.toContain(na.bridge);
    expect(links()).toContain(nb.bridge);
    expect((await b.get<C>("/v1/containers/same-name")).state).toBe("running");
  });
});
