// The node's bridge network over CNI (bridge + host-local + portmap, and loopback): one per data
// root, with its own bridge name, subnet, lease dir and network name, so two daemons on one machine
// never share one. berth chooses every IP itself (static, sticky or the next free one) and hands it
// to host-local, whose lease files are the node's lock on it. Each attachment's ADD result is kept
// on disk for DEL; every CNI operation of the node runs one at a time.
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import writeFileAtomic from "write-file-atomic";
import { conflict, invalid } from "../shared/errors.js";
import type { PortMapping } from "../shared/spec.js";
import { cidrHosts, ipToInt, intToIp, parseCidr, type Cidr } from "../shared/ip.js";
import type { Logger } from "../log.js";
import { Cni, type CniNetworkList, type CniResult } from "./cni.js";
import { run } from "./exec.js";

export interface NetworkInfo {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
}

/** What is kept on disk per attachment: enough to DEL it after any crash. */
export interface AttachmentRecord {
  key: string;
  ip: string;
  ports: PortMapping[];
  bootId: string;
  /** Written before ADD ("adding") and after ("added", with the result DEL needs). */
  state: "adding" | "added";
  result?: CniResult;
}

export interface BridgeNetworkOptions {
  dataRoot: string;
  /** An explicit subnet (`--subnet`); otherwise a /24 of 10.89.0.0/16 chosen once and kept. */
  subnet?: string;
  log: Logger;
  cni?: Cni;
  /** Where subnets are claimed machine-wide (a file per subnet naming its data root). */
  claimDir?: string;
}

const POOL = "10.89.0.0/16";

export class BridgeNetwork {
  private queue: Promise<unknown> = Promise.resolve();
  private last = 0;

  private constructor(
    readonly info: NetworkInfo,
    private readonly dir: string,
    private readonly cni: Cni,
    private readonly log: Logger,
    readonly bootId: string,
    private readonly claimDir: string,
    private readonly dataRoot: string,
  ) {}

  static async open(o: BridgeNetworkOptions): Promise<BridgeNetwork> {
    const dir = join(o.dataRoot, "network");
    await mkdir(join(dir, "attachments"), { recursive: true, mode: 0o700 });
    await mkdir(join(dir, "leases"), { recursive: true, mode: 0o700 });
    const h = createHash("sha256").update(o.dataRoot).digest("hex");
    const saved = await readJson<NetworkInfo>(join(dir, "network.json"));
    const claimDir = o.claimDir ?? "/run/berth/subnets";
    let subnet: string;
    if (o.subnet) {
      const c = parseCidr(o.subnet);
      if (c.prefix < 16 || c.prefix > 28) throw invalid(`--subnet ${o.subnet}: the prefix must be between /16 and /28`);
      subnet = `${intToIp(c.network)}/${c.prefix}`;
      if (saved && saved.subnet !== subnet && (await listRecords(dir)).length) {
        throw conflict(`the network is ${saved.subnet} and still has attachments; remove its containers before changing --subnet`);
      }
      if (!(await claim(claimDir, subnet, o.dataRoot))) throw conflict(`subnet ${subnet} is taken by another berth daemon on this machine`);
    } else if (saved && (await claim(claimDir, saved.subnet, o.dataRoot))) {
      subnet = saved.subnet;
    } else {
      subnet = await chooseSubnet(claimDir, o.dataRoot, Number.parseInt(h.slice(0, 4), 16) % 256);
    }
    const c = parseCidr(subnet);
    const info: NetworkInfo = {
      name: `berth-${h.slice(0, 12)}`,
      bridge: saved?.bridge ?? `berth${h.slice(0, 8)}`,
      subnet,
      gateway: intToIp(c.network + 1),
    };
    if (JSON.stringify(saved) !== JSON.stringify(info)) await writeFileAtomic(join(dir, "network.json"), JSON.stringify(info, null, 2));
    const bootId = (await readFile(process.env.BERTH_BOOT_ID_FILE ?? "/proc/sys/kernel/random/boot_id", "utf8").catch(() => "")).trim();
    return new BridgeNetwork(info, dir, o.cni ?? new Cni({ log: o.log }), o.log, bootId, claimDir, o.dataRoot);
  }

  get cidr(): Cidr {
    return parseCidr(this.info.subnet);
  }

  /** The IP is a host address of this subnet other than the gateway; InvalidArgument otherwise. */
  checkIp(ip: string): void {
    const c = this.cidr;
    const n = ipToInt(ip);
    const hosts = cidrHosts(c);
    if (n < hosts.first || n > hosts.last) {
      const what = n === c.network ? "the network address" : n === c.broadcast ? "the broadcast address" : "outside the node's subnet";
      throw invalid(`IP ${ip} is ${what} (${this.info.subnet})`);
    }
    if (ip === this.info.gateway) throw invalid(`IP ${ip} is the bridge's gateway address`);
  }

  /** IPs host-local holds a lease file for (ours, or left by a crash). */
  async leased(): Promise<Set<string>> {
    const names = await readdir(join(this.dir, "leases", this.info.name)).catch(() => [] as string[]);
    return new Set(names.filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n)));
  }

  records(): Promise<AttachmentRecord[]> {
    return listRecords(this.dir);
  }

  record(key: string): Promise<AttachmentRecord | null> {
    return readJson<AttachmentRecord>(this.recordFile(key));
  }

  private recordFile(key: string): string {
    if (!/^[a-zA-Z0-9_-]{1,80}$/.test(key)) throw invalid(`invalid attachment key '${key}'`);
    return join(this.dir, "attachments", `${key}.json`);
  }

  private list(): CniNetworkList {
    return {
      cniVersion: "1.0.0",
      name: this.info.name,
      plugins: [
        {
          type: "bridge", bridge: this.info.bridge, isGateway: true, ipMasq: true, hairpinMode: true,
          ipam: {
            type: "host-local",
            ranges: [[{ subnet: this.info.subnet, gateway: this.info.gateway }]],
            routes: [{ dst: "0.0.0.0/0" }],
            dataDir: join(this.dir, "leases"),
          },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    };
  }

  private static readonly LOOPBACK: CniNetworkList = { cniVersion: "1.0.0", name: "berth-lo", plugins: [{ type: "loopback" }] };

  /** Runs `fn` after every CNI operation queued before it (one at a time per node). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Attaches the pinned netns at `netns` to the bridge with `ip` (or the next free IP not in
   * `exclude` when null), and publishes `ports`. An attachment already made in this boot for this
   * key is returned as it is; a stale one (other boot, netns gone) is released first and made
   * again with the same IP.
   */
  attach(key: string, req: { netns: string; ip: string | null; exclude: ReadonlySet<string>; ports: PortMapping[]; netnsPinned: boolean }): Promise<AttachmentRecord> {
    return this.serial(async () => {
      const prev = await this.record(key);
      if (prev?.state === "added" && prev.bootId === this.bootId && req.netnsPinned && (!req.ip || req.ip === prev.ip)) return prev;
      if (prev) await this.del(prev, req.netnsPinned ? req.netns : "");
      const ip = req.ip ?? prev?.ip ?? (await this.pick(req.exclude));
      this.checkIp(ip);
      const rec: AttachmentRecord = { key, ip, ports: req.ports, bootId: this.bootId, state: "adding" };
      await writeFileAtomic(this.recordFile(key), JSON.stringify(rec));
      const t0 = performance.now();
      try {
        await this.cni.add(BridgeNetwork.LOOPBACK, { containerId: key, netns: req.netns, ifName: "lo" });
        rec.result = await this.cni.add(this.list(), {
          containerId: key, netns: req.netns, ifName: "eth0",
          args: { IP: ip }, capabilityArgs: { portMappings: toCni(req.ports) },
        });
      } catch (err) {
        // DEL is called even when ADD failed (CNI spec): it frees the lease and half-made rules.
        await this.del(rec, req.netns).catch((e) => this.log.warn({ key, err: (e as Error).message }, "DEL after a failed ADD failed"));
        throw err;
      }
      rec.state = "added";
      await writeFileAtomic(this.recordFile(key), JSON.stringify(rec));
      this.log.debug({ key, ip, ms: Math.round(performance.now() - t0) }, "attached");
      return rec;
    });
  }

  /** Brings up `lo` in a netns that gets no bridge attachment (a pod with network none). */
  loopback(netns: string): Promise<void> {
    return this.serial(async () => {
      await this.cni.add(BridgeNetwork.LOOPBACK, { containerId: "lo", netns, ifName: "lo" });
    });
  }

  /** Releases the attachment (lease, veth, NAT and port rules). Idempotent. */
  detach(key: string, netns: string): Promise<void> {
    return this.serial(async () => {
      const rec = await this.record(key);
      if (rec) await this.del(rec, netns);
    });
  }

  private async del(rec: AttachmentRecord, netns: string): Promise<void> {
    // portmap removes its rules only when it gets the same mappings again.
    await this.cni.del(this.list(), {
      containerId: rec.key, netns, ifName: "eth0", args: { IP: rec.ip }, capabilityArgs: { portMappings: toCni(rec.ports) },
    }, rec.result);
    await rm(this.recordFile(rec.key), { force: true });
  }

  private async pick(exclude: ReadonlySet<string>): Promise<string> {
    const { first, last } = cidrHosts(this.cidr);
    const taken = new Set([...exclude, ...(await this.leased()), this.info.gateway]);
    // Round robin from the last IP handed out: a just-freed IP is not reused at once (stale ARP).
    const span = last - first + 1;
    const start = this.last >= first && this.last <= last ? this.last + 1 - first : 0;
    for (let i = 0; i < span; i++) {
      const n = first + ((start + i) % span);
      const ip = intToIp(n);
      if (!taken.has(ip)) {
        this.last = n;
        return ip;
      }
    }
    throw conflict(`no free IP left in ${this.info.subnet}`);
  }

  /**
   * At the daemon's clean stop: with no attachment left, the bridge goes, and portmap's shared
   * chains too when nobody's rules are left in them (they are shared by every portmap user).
   */
  async releaseIfUnused(): Promise<boolean> {
    return this.serial(async () => {
      if ((await this.records()).length) return false;
      await run("ip", ["link", "del", this.info.bridge], { timeoutMs: 10_000, toolName: "ip" }).catch(() => undefined);
      // The subnet stays ours in network.json; the machine-wide claim is taken again at start.
      await unclaim(this.claimDir, this.info.subnet, this.dataRoot);
      // Another berth daemon (its claim is there) may be about to add a rule to the shared chains:
      // deleting them under it would fail its ADD, so only the last daemon removes them.
      const others = await readdir(this.claimDir).catch(() => [] as string[]);
      if (others.length === 0) await removeSharedPortmapChains(this.log);
      return true;
    });
  }
}

function toCni(ports: readonly PortMapping[]) {
  return ports.map((p) => ({ hostPort: p.hostPort, containerPort: p.containerPort, protocol: p.protocol ?? "tcp", hostIP: p.hostIp ?? "" }));
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, "utf8")) as T;
  } catch {
    return null;
  }
}

async function listRecords(dir: string): Promise<AttachmentRecord[]> {
  const names = await readdir(join(dir, "attachments")).catch(() => [] as string[]);
  const out: AttachmentRecord[] = [];
  for (const n of names) {
    if (!n.endsWith(".json")) continue;
    const r = await readJson<AttachmentRecord>(join(dir, "attachments", n));
    if (r) out.push(r);
  }
  return out;
}

/** Claims `subnet` for `dataRoot` machine-wide; true if it is ours (now or already). */
async function claim(claimDir: string, subnet: string, dataRoot: string): Promise<boolean> {
  await mkdir(claimDir, { recursive: true, mode: 0o700 });
  const file = join(claimDir, subnet.replace("/", "_"));
  try {
    await writeFile(file, dataRoot, { flag: "wx" });
    return true;
  } catch {
    const owner = (await readFile(file, "utf8").catch(() => "")).trim();
    if (owner === dataRoot) return true;
    // A claim whose data root no longer names this subnet is stale (that daemon moved or is gone).
    const theirs = await readJson<NetworkInfo>(join(owner, "network", "network.json"));
    if (theirs?.subnet === subnet) return false;
    await writeFileAtomic(file, dataRoot);
    return true;
  }
}

async function unclaim(claimDir: string, subnet: string, dataRoot: string): Promise<void> {
  const file = join(claimDir, subnet.replace("/", "_"));
  if ((await readFile(file, "utf8").catch(() => "")).trim() === dataRoot) await rm(file, { force: true });
}

/** A /24 of the pool that no route of the host uses and no other daemon claimed, from `seed` on. */
async function chooseSubnet(claimDir: string, dataRoot: string, seed: number): Promise<string> {
  const routes = await run("ip", ["-4", "route", "show"], { timeoutMs: 10_000, toolName: "ip" }).then((r) => r.stdout, () => "");
  const used = new Set(routes.split("\n").map((l) => l.split(" ")[0]).filter((d) => d.includes("/")));
  const pool = parseCidr(POOL);
  for (let i = 0; i < 256; i++) {
    const third = (seed + i) % 256;
    const subnet = `${intToIp(pool.network + third * 256)}/24`;
    if (used.has(subnet)) continue;
    if (await claim(claimDir, subnet, dataRoot)) return subnet;
  }
  throw conflict(`no free /24 left in ${POOL}; pass --subnet`);
}

async function removeSharedPortmapChains(log: Logger): Promise<void> {
  const save = await run("iptables-save", ["-t", "nat"], { timeoutMs: 10_000, toolName: "iptables-save" }).then((r) => r.stdout, () => "");
  // Another attachment (ours or anyone's) still has a rule in the dispatch chain: leave them.
  if (/^-A CNI-HOSTPORT-DNAT /m.test(save) || !/^:CNI-HOSTPORT-DNAT /m.test(save)) return;
  const ipt = (args: string[]) => run("iptables", ["-w", "-t", "nat", ...args], { timeoutMs: 10_000, toolName: "iptables" }).catch(() => undefined);
  await ipt(["-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]);
  await ipt(["-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"]);
  await ipt(["-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"]);
  for (const chain of ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"]) {
    await ipt(["-F", chain]);
    await ipt(["-X", chain]);
  }
  log.debug("portmap's shared chains removed");
}

/**
 * Whether the host port is free for a publication: portmap's DNAT binds nothing, so a process
 * listening there would silently lose its traffic to the container. Probed by binding it a moment.
 */
export async function hostPortFree(p: { hostPort: number; protocol?: "tcp" | "udp"; hostIp?: string }): Promise<boolean> {
  const host = p.hostIp && p.hostIp !== "0.0.0.0" ? p.hostIp : "0.0.0.0";
  if ((p.protocol ?? "tcp") === "udp") {
    const { createSocket } = await import("node:dgram");
    return new Promise((resolve, reject) => {
      const s = createSocket("udp4");
      s.once("error", (err: NodeJS.ErrnoException) => {
        s.close();
        if (err.code === "EADDRNOTAVAIL") reject(invalid(`hostIp ${host} is not an address of this host`));
        else resolve(false);
      });
      s.bind(p.hostPort, host, () => s.close(() => resolve(true)));
    });
  }
  const { createServer } = await import("node:net");
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EADDRNOTAVAIL") reject(invalid(`hostIp ${host} is not an address of this host`));
      else resolve(err.code !== "EADDRINUSE" && err.code !== "EACCES");
    });
    srv.listen({ port: p.hostPort, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}
