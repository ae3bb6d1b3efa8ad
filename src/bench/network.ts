// The networking figures (issue 7, "Benchmark"): the run + remove cycle on the bridge against the
// same raw cycle with the CNI plugins called by hand (and against network none), interleaved; a
// pod of 3 created and started; 200 containers attached to one bridge, then brought back after a
// host-reboot simulation. Not a test: nothing passes or fails.
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { cmd, get, pct, pool, r1, removeAll, removeCgroup, sleep, startBenchDaemon, stopBenchDaemon, type BenchDaemon } from "./proc.js";
import { rawCycle, type RawNet } from "./raw.js";

const CNI = process.env.BERTH_CNI_PATH ?? "/usr/lib/cni";

/** One CNI plugin, as a runtime calls it: env and JSON on stdin, the result on stdout. */
function plugin(type: string, command: string, conf: object, id: string, netns: string, ifName: string, args = ""): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(`${CNI}/${type}`, [], {
      env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_CONTAINERID: id, CNI_NETNS: netns, CNI_IFNAME: ifName, CNI_PATH: CNI, CNI_ARGS: args },
    });
    let out = "";
    p.stdout.on("data", (b: Buffer) => (out += b));
    p.once("error", reject);
    p.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${type} ${command}: ${out}`))));
    p.stdin.end(JSON.stringify(conf));
  });
}

/** What berth does per container, by hand: a pinned netns, loopback, bridge + host-local, portmap. */
function rawCni(dir: string, subnet3: string, bridge: string): RawNet {
  const name = `rawbench${randomBytes(3).toString("hex")}`;
  const bridgeConf = {
    cniVersion: "1.0.0", name, type: "bridge", bridge, isGateway: true, ipMasq: true, hairpinMode: true,
    ipam: { type: "host-local", ranges: [[{ subnet: `${subnet3}.0/24`, gateway: `${subnet3}.1` }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: join(dir, "leases") },
  };
  const portmap = { cniVersion: "1.0.0", name, type: "portmap", capabilities: { portMappings: true }, runtimeConfig: { portMappings: [] } };
  const results = new Map<string, string>();
  return {
    async before(id, i) {
      const ns = join(dir, `${id}.netns`);
      await writeFile(ns, "");
      await execa("unshare", [`--net=${ns}`, "true"]);
      await plugin("loopback", "ADD", { cniVersion: "1.0.0", name: "lo", type: "loopback" }, id, ns, "lo");
      const ip = `IgnoreUnknown=1;IP=${subnet3}.${2 + (i % 250)}`;
      const r = await plugin("bridge", "ADD", bridgeConf, id, ns, "eth0", ip);
      const r2 = await plugin("portmap", "ADD", { ...portmap, prevResult: JSON.parse(r) }, id, ns, "eth0", ip);
      results.set(id, r2);
      return ns;
    },
    async after(id) {
      const ns = join(dir, `${id}.netns`);
      const prevResult = JSON.parse(results.get(id)!);
      await plugin("portmap", "DEL", { ...portmap, prevResult }, id, ns, "eth0");
      await plugin("bridge", "DEL", { ...bridgeConf, prevResult }, id, ns, "eth0");
      await execa("umount", [ns]);
      await rm(ns, { force: true });
      results.delete(id);
    },
  };
}

async function cycle(d: BenchDaemon, network: object): Promise<number> {
  const t0 = performance.now();
  const r = await cmd(d.nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "1000"], network });
  await cmd(d.nc, "container.remove", { id: r.id, force: true });
  return performance.now() - t0;
}

const stats = (xs: number[]) => ({ medianMs: r1(pct(xs, 50)), p99Ms: r1(pct(xs, 99)) });

export async function benchNetwork(): Promise<Record<string, unknown>> {
  const N = Number(process.env.BENCH_NET_RUNS ?? 50);
  const MANY = Number(process.env.BENCH_NET_MANY ?? 200);
  const out: Record<string, unknown> = {};
  const d = await startBenchDaemon("net");
  const work = await mkdtemp(join(tmpdir(), "berth-rawnet-"));
  const rawBridge = `bbraw${randomBytes(3).toString("hex")}`;
  try {
    const images = JSON.parse(await readFile(join(d.dataRoot, "images", "index.json"), "utf8")) as { images: { name: string; rootfs: string }[] };
    const lower = images.images.find((i) => i.name === "busybox:latest")!.rootfs;
    await execa("runc", ["spec", "--bundle", work]);
    await execa("mv", [join(work, "config.json"), join(work, "config.template.json")]);
    const net = rawCni(work, "10.89.253", rawBridge);

    // --- the cycle, interleaved: berth bridge, berth none, raw + CNI by hand ---
    const bridge: number[] = [];
    const none: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < 3; i++) {
      await cycle(d, { mode: "bridge" });
      await rawCycle(lower, work, i, net);
    }
    for (let i = 0; i < N; i++) {
      bridge.push(await cycle(d, { mode: "bridge" }));
      none.push(await cycle(d, { mode: "none" }));
      raw.push(await rawCycle(lower, work, i, net));
    }
    out.runCycle = {
      runs: N, bridge: stats(bridge), none: stats(none), rawWithCni: stats(raw),
      ratioBridgeToRaw: r1((pct(bridge, 50) / pct(raw, 50)) * 100) / 100, target: "≤ 1.3",
      bridgeMinusNoneMs: r1(pct(bridge, 50) - pct(none, 50)),
    };

    // --- a pod of 3: create + start of all ---
    const pods: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = performance.now();
      const p = await cmd(d.nc, "pod.create", {});
      for (let k = 0; k < 3; k++) await cmd(d.nc, "container.run", { pod: p.id, image: "busybox:latest", cmd: ["sleep", "1000"] });
      pods.push(performance.now() - t0);
      await cmd(d.nc, "pod.remove", { id: p.id, force: true });
    }
    out.podOf3 = { runs: pods.length, ...stats(pods) };

    // --- MANY containers on one bridge, then a host-reboot simulation ---
    const t0 = performance.now();
    const ids = await pool(Array.from({ length: MANY }, (_, i) => i), 4, async () =>
      (await cmd(d.nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "100000"], restartPolicy: { name: "always" } })).id as string,
    );
    const attachMs = performance.now() - t0;
    out.many = { containers: MANY, attachAllMs: Math.round(attachMs), perContainerMs: r1(attachMs / MANY) };
  } catch (err) {
    await stopBenchDaemon(d).catch(() => undefined);
    throw err;
  } finally {
    await rm(work, { recursive: true, force: true });
    try { execFileSync("ip", ["link", "del", rawBridge], { stdio: "ignore" }); } catch { /* never made */ }
    removeCgroup("berth-bench");
  }
  // The reboot: the daemon stops, every conmon and container process is killed, rootfs and netns
  // unmounted, the bridge deleted; a new boot id. Then the daemon starts and `always` brings them back.
  const info = JSON.parse(readFileSync(join(d.dataRoot, "network", "network.json"), "utf8")) as { bridge: string };
  const pids = (await get<{ containers: { id: string; pid: number; ip: string }[] }>(d, "/v1/containers")).containers;
  d.child.kill("SIGTERM");
  await new Promise((r) => d.child.once("exit", r));
  await d.nc.close().catch(() => undefined);
  for (const c of pids) {
    const dir = join(d.dataRoot, "containers", c.id);
    for (const pid of [Number(readFileSync(join(dir, "conmon.pid"), "utf8")), c.pid]) {
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
    }
  }
  await sleep(500);
  for (const c of pids) {
    execFileSync("umount", ["-l", join(d.dataRoot, "containers", c.id, "rootfs")], { stdio: "ignore" });
    execFileSync("umount", ["-l", join(d.dataRoot, "sandboxes", c.id, "net")], { stdio: "ignore" });
  }
  execFileSync("ip", ["link", "del", info.bridge], { stdio: "ignore" });
  const bootFile = join(d.dataRoot, "boot_id.bench");
  writeFileSync(bootFile, `bench-${Date.now()}`);
  process.env.BERTH_BOOT_ID_FILE = bootFile;
  const t1 = performance.now();
  const d2 = await startBenchDaemon("net", [], { dataRoot: d.dataRoot, node: d.node });
  delete process.env.BERTH_BOOT_ID_FILE;
  try {
    for (;;) {
      const { containers } = await get<{ containers: { id: string; pid: number; ip: string | null }[] }>(d2, "/v1/containers");
      if (containers.length >= pids.length) {
        const before = new Map(pids.map((c) => [c.id, c.ip]));
        Object.assign(out.many as object, {
          recoverAllAfterRebootMs: Math.round(performance.now() - t1),
          sameIps: containers.every((c) => before.get(c.id) === c.ip),
          newPids: containers.every((c) => !pids.some((p) => p.pid === c.pid)),
        });
        break;
      }
      await sleep(100);
    }
    await removeAll(d2);
  } finally {
    await stopBenchDaemon(d2);
  }
  return out;
}
