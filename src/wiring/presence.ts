// Which nodes are up: each daemon puts a heartbeat under its node's key in the KV bucket
// `berth_nodes` every few seconds, and watches everyone's. A node is up while its last beat is
// recent; one that stopped cleanly deletes its key (down at once), one that died goes stale. The
// log says which nodes exist (NodeStarted); this says which answer. Not in the log: a beat every
// few seconds from every node is noise there, and "up" is a fact of now, not of history.
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { logger } from "../log.js";

export const PRESENCE_BUCKET = "berth_nodes";
const BEAT_MS = 3_000;
/** A node whose last beat is older than this is down (three beats missed, and some). */
export const STALE_MS = 10_000;

export interface Presence {
  lastSeen: string;
  up: boolean;
}

export class NodePresence {
  private readonly seen = new Map<string, number>();
  private timer: NodeJS.Timeout | null = null;
  private stopWatch: (() => void) | null = null;
  private readonly log = logger("presence");

  private constructor(
    private readonly kv: KV,
    private readonly node: string,
  ) {}

  static async open(nc: NatsConnection, node: string, replicas: number): Promise<NodePresence> {
    const kv = await new Kvm(nc).create(PRESENCE_BUCKET, { history: 1, replicas, description: "berth node heartbeats" });
    return new NodePresence(kv, node);
  }

  async start(): Promise<void> {
    await this.beat();
    this.timer = setInterval(() => void this.beat(), BEAT_MS);
    this.timer.unref();
    const it = await this.kv.watch();
    this.stopWatch = () => it.stop();
    void (async () => {
      for await (const e of it) {
        if (e.operation === "PUT") this.seen.set(e.key, e.created.getTime());
        else this.seen.delete(e.key);
      }
    })().catch((err) => this.log.warn({ err }, "presence watch ended"));
  }

  private async beat(): Promise<void> {
    await this.kv.put(this.node, JSON.stringify({ at: new Date().toISOString() })).catch((err) => this.log.debug({ err }, "heartbeat not written"));
  }

  /** A node's last beat and whether it is up; null for a node never seen beating. */
  of(node: string, now = Date.now()): Presence | null {
    const t = this.seen.get(node);
    return t === undefined ? null : { lastSeen: new Date(t).toISOString(), up: now - t < STALE_MS };
  }

  /** A clean stop: this node is down at once for everyone. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.stopWatch?.();
    await this.kv.delete(this.node).catch(() => undefined);
  }
}
