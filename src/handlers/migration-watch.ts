// A migration's target that dies after the source's dump leaves the container stopped until the
// target's daemon is back (it then carries the saga on). With BERTH_MIGRATION_TAKEOVER_MS set,
// the source watches the targets of its dumped migrations instead: one that is down (no
// heartbeat) for that long gets its restore declared failed by the source (the fact the target
// would append), and the compensation runs: the source restores it from the same checkpoint.
// The fact is appended with the aggregate's expected version, so it and the target's record of
// the restore cannot both be stored: whichever comes first ends the saga, and a target that
// restored it but did not record it removes its copy when its daemon is back (recovery).
// Off by default: a target whose daemon died after the restore, under a conmon that lives on,
// runs a second copy until then, and for a stateful service a wait is better than two copies.

/** How long a dumped migration's target may be down before its source takes it back (0: never). */
export const MIGRATION_TAKEOVER_MS = Number(process.env.BERTH_MIGRATION_TAKEOVER_MS ?? 0);

export interface Watched {
  /** The container's or pod's id. */
  key: string;
  toNode: string;
}

/**
 * Pure but for the clock it is given: which watched migrations' targets have been down for the
 * grace. A target seen up again starts over.
 */
export class TargetWatch {
  private readonly downSince = new Map<string, number>();

  constructor(
    private readonly nodeUp: (node: string) => boolean,
    private readonly graceMs = MIGRATION_TAKEOVER_MS,
  ) {}

  /** The keys whose target has been down for at least the grace, at `now`. */
  expired(items: readonly Watched[], now: number): string[] {
    const out: string[] = [];
    if (!(this.graceMs > 0)) return out;
    const seen = new Set<string>();
    for (const { key, toNode } of items) {
      seen.add(key);
      if (this.nodeUp(toNode)) {
        this.downSince.delete(key);
        continue;
      }
      const since = this.downSince.get(key) ?? now;
      this.downSince.set(key, since);
      if (now - since >= this.graceMs) out.push(key);
    }
    for (const k of [...this.downSince.keys()]) if (!seen.has(k)) this.downSince.delete(k);
    return out;
  }

  /** The reason the source records. */
  reason(toNode: string): string {
    return `node ${toNode} went down after the dump (no heartbeat for ${Math.round(this.graceMs / 1000)} s): restored here instead`;
  }
}

/** How often the takeover loop looks at the targets. */
const WATCH_MS = 2_000;

/**
 * The takeover loop, for containers and pods alike: every couple of seconds `scan` lists this
 * node's dumped migrations, and `takeBack` gets each whose target has been down for the grace,
 * with the reason to record. Null (nothing runs) when takeover is off or node liveness is unknown.
 * The returned function stops it.
 */
export function watchTargets(nodeUp: ((node: string) => boolean) | undefined, scan: () => Watched[], takeBack: (key: string, reason: string) => void, graceMs = MIGRATION_TAKEOVER_MS): (() => void) | null {
  if (!nodeUp || !(graceMs > 0)) return null;
  const targets = new TargetWatch(nodeUp, graceMs);
  const timer = setInterval(() => {
    const items = scan();
    const toNode = new Map(items.map((w) => [w.key, w.toNode]));
    for (const key of targets.expired(items, Date.now())) takeBack(key, targets.reason(toNode.get(key)!));
  }, WATCH_MS);
  timer.unref();
  return () => clearInterval(timer);
}
