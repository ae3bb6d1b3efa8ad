// A sandbox is what outlives a container's process: its pinned namespaces and, on the bridge, its
// CNI attachment (IP, veth, NAT and port rules). A lone bridge container has one of its own, keyed
// by its id, made at its first start and kept until it is removed; a pod has one for all its
// members. `ensure` is idempotent and repairs what a crash or a host reboot took away (a netns no
// longer pinned: the stale attachment is released and made again with the same IP).
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { invalid } from "../shared/errors.js";
import type { PortMapping } from "../shared/spec.js";
import type { Logger } from "../log.js";
import type { BridgeNetwork } from "./bridge-network.js";
import { isPinned, nsFile, pinNamespaces, unpinNamespaces, type NsKind } from "./netns.js";

export interface SandboxRequest {
  kinds: readonly NsKind[];
  /** The uts namespace's hostname (pods). */
  hostname?: string;
  /** Attach to the bridge: the wanted IP (static or sticky) or null for the next free one. */
  bridge?: { ip: string | null; exclude: ReadonlySet<string>; ports: PortMapping[] };
}

export interface SandboxInfo {
  paths: Partial<Record<"network" | "ipc" | "uts", string>>;
  ip: string | null;
}

const OCI_NS = { net: "network", ipc: "ipc", uts: "uts" } as const;
const KEY_RE = /^[a-zA-Z0-9_-]{1,80}$/;

export class Sandboxes {
  /** One operation at a time per sandbox: a pod's members may start together. */
  private readonly locks = new Map<string, Promise<unknown>>();

  private locked<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => { if (this.locks.get(key) === tail) this.locks.delete(key); });
    return next;
  }

  constructor(
    readonly root: string,
    readonly network: BridgeNetwork,
    private readonly log: Logger,
  ) {}

  dir(key: string): string {
    if (!KEY_RE.test(key)) throw invalid(`invalid sandbox key '${key}'`);
    return join(this.root, key);
  }

  ensure(key: string, req: SandboxRequest): Promise<SandboxInfo> {
    return this.locked(key, () => this.ensureNow(key, req));
  }

  private async ensureNow(key: string, req: SandboxRequest): Promise<SandboxInfo> {
    const dir = this.dir(key);
    const net = nsFile(dir, "net");
    const wasPinned = await isPinned(net);
    await pinNamespaces(dir, req.kinds, { hostname: req.hostname, log: this.log });
    let ip: string | null = null;
    if (req.bridge) {
      const rec = await this.network.attach(key, { netns: net, netnsPinned: wasPinned, ...req.bridge });
      ip = rec.ip;
    } else if (!wasPinned && req.kinds.includes("net")) {
      await this.network.loopback(net);
    }
    const paths: SandboxInfo["paths"] = {};
    for (const k of req.kinds) paths[OCI_NS[k]] = nsFile(dir, k);
    return { paths, ip };
  }

  /** Releases the bridge attachment (with the netns still there, so DEL removes everything). */
  detach(key: string): Promise<string | null> {
    return this.locked(key, () => this.detachNow(key));
  }

  private async detachNow(key: string): Promise<string | null> {
    const net = nsFile(this.dir(key), "net");
    const rec = await this.network.record(key);
    if (!rec) return null;
    await this.network.detach(key, (await isPinned(net)) ? net : "");
    return rec.ip;
  }

  /** Everything of the sandbox: attachment, pinned namespaces, its dir. Idempotent. */
  remove(key: string): Promise<void> {
    return this.locked(key, async () => {
      await this.detachNow(key);
      const dir = this.dir(key);
      await unpinNamespaces(dir, this.log);
      await rm(dir, { recursive: true, force: true });
    });
  }

  /** The sandbox's netns is pinned and its attachment was made in this boot. */
  async attached(key: string): Promise<boolean> {
    const rec = await this.network.record(key);
    return rec?.state === "added" && rec.bootId === this.network.bootId && (await isPinned(nsFile(this.dir(key), "net")));
  }

  /** Keys of every sandbox on disk or attachment on record (a crash may leave either alone). */
  async keys(): Promise<string[]> {
    const dirs = await readdir(this.root).catch(() => [] as string[]);
    const recs = (await this.network.records()).map((r) => r.key);
    return [...new Set([...dirs, ...recs])].filter((k) => KEY_RE.test(k));
  }
}
