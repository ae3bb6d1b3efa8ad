// Keeps the node's local checkpoints current from the log (issue 11, story 1): a container of
// this node annotated berth.io/checkpoint=true (or a member of a pod so annotated) has a sanitized
// copy on this node's disk (runtime/local-checkpoints.ts), rewritten whenever what it holds
// changes in the log; a container that is removed, moves to another node or loses the annotation
// has its copy retired at once (the log is reachable: it says so). A copy whose container this
// node has dumped for a migration is marked retiring (not to be started offline: the target may
// run it). A copy the hand-back after an offline span retired (reconcileLocalCopies) is deleted
// when its grace period is over. What a node does with its copies when the log is not reachable
// is checkpointer.ts's table.
import { wantsLocalCheckpoint } from "../shared/checkpoint-annotation.js";
import { fault } from "../fault.js";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { PodState } from "../aggregates/pod/index.js";
import type { Projector } from "../projections/projector.js";
import { DEFAULT_GRACE_MS } from "./checkpointer.js";
import type { CopyRetiring, LocalCopyPort } from "./ports.js";

const CONTAINER = "berth.ev.container.";
const POD = "berth.ev.pod.";

/** Pure: whether `c` should have a local copy on `node` (`pod`: its pod, if a member). */
export function wantsCopy(c: ContainerState | undefined, node: string, pod?: PodState): boolean {
  if (!c || c.removed || c.node !== node) return false;
  return wantsLocalCheckpoint(c.annotations) || (!!pod && !pod.removed && wantsLocalCheckpoint(pod.spec.annotations));
}

/**
 * Pure: a copy this node keeps but must not start offline — its container is being migrated away
 * and the source has dumped it (the target may run it now; a compensation, which restores it here,
 * clears the migration and with it this mark).
 */
export function migratingAway(c: ContainerState, node: string): CopyRetiring | null {
  const m = c.migration;
  return m && m.fromNode === node && m.dumpedAt ? { reason: "migrated", since: m.dumpedAt, toNode: m.toNode } : null;
}

/** What a copy holds of the state, but its time: the same key, no need to write it again. */
function copyKey(c: ContainerState, pod: PodState | null, retiring: CopyRetiring | null): string {
  return JSON.stringify([c.name, c.image, c.imageDigest, c.revision, c.ip, c.spec, retiring, pod && [pod.id, pod.name, pod.spec, pod.ip]]);
}

interface Held {
  writtenAt: string;
  /** The key of what it holds; null: read from disk, of version `logSeq`. */
  key: string | null;
  logSeq?: number;
  retiring: CopyRetiring | null;
  /** Retiring when this start found it (the hand-back retired it): deleted only when its grace is over. */
  graced?: boolean;
}

export class LocalCheckpointKeeper {
  private readonly log = logger("local-checkpoints");
  /** Copies on disk. */
  private readonly copies = new Map<string, Held>();
  /** One sync at a time per container, in the order the log asked. */
  private readonly chains = new Map<string, Promise<void>>();
  /** Retiring copies waiting for the end of their grace period. */
  private readonly graceTimers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  /**
   * `graceMs`: how long a retiring copy (the hand-back found its container removed or moved away,
   * reconcileLocalCopies) is kept. A removal or move seen live (a migration's end included)
   * retires the copy at once.
   */
  constructor(private readonly node: string, private readonly projector: Projector, private readonly port: LocalCopyPort, private readonly graceMs = DEFAULT_GRACE_MS) {}

  /** After recovery: every copy made or retired as the log says, then kept so as events come. */
  async start(): Promise<void> {
    for (const { id, writtenAt, logSeq, retiring } of await this.port.list()) this.copies.set(id, { writtenAt, key: null, logSeq, retiring, graced: !!retiring });
    const ids = new Set([...this.copies.keys(), ...[...this.projector.model.containers.values()].filter((c) => c.node === this.node).map((c) => c.id)]);
    this.projector.onEvent((e) => {
      if (e.subject.startsWith(CONTAINER)) this.sync(e.subject.slice(CONTAINER.length));
      else if (e.subject.startsWith(POD)) for (const m of this.projector.model.membersOf(e.subject.slice(POD.length))) this.sync(m.id);
    });
    await Promise.all([...ids].map((id) => this.sync(id)));
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.graceTimers.values()) clearTimeout(t);
    this.graceTimers.clear();
  }

  /** The copy of `id` on this node that would bring it back offline, if there is one (a retiring copy would not). */
  info(id: string): { writtenAt: string } | null {
    const c = this.copies.get(id);
    return c && !c.retiring ? { writtenAt: c.writtenAt } : null;
  }

  /** Drained: every sync asked for so far has ended. */
  async idle(): Promise<void> {
    await Promise.all([...this.chains.values()]);
  }

  private sync(id: string): Promise<void> {
    const next = (this.chains.get(id) ?? Promise.resolve())
      .then(() => this.apply(id))
      .catch((err) => this.log.warn({ container: id, err }, "could not keep the local checkpoint"));
    this.chains.set(id, next);
    void next.finally(() => this.chains.get(id) === next && this.chains.delete(id));
    return next;
  }

  private async apply(id: string): Promise<void> {
    if (this.stopped) return;
    const model = this.projector.model;
    const c = model.byId(id);
    const pod = c?.spec.pod ? model.pods.get(c.spec.pod) : undefined;
    const have = this.copies.get(id);
    if (!wantsCopy(c, this.node, pod)) {
      if (!have) return;
      // Retired by the hand-back: kept for the grace period (never started meanwhile), then deleted.
      const gone = !c || c.removed || c.node !== this.node;
      const leftMs = have.graced && have.retiring && gone ? Date.parse(have.retiring.since) + this.graceMs - Date.now() : 0;
      if (leftMs > 0) {
        if (!this.graceTimers.has(id)) {
          const t = setTimeout(() => (this.graceTimers.delete(id), void this.sync(id)), leftMs);
          t.unref();
          this.graceTimers.set(id, t);
        }
        return;
      }
      fault("copy-retiring");
      await this.port.remove(id);
      this.copies.delete(id);
      this.log.info({ container: id, ...(have.retiring ? { retiring: have.retiring } : {}) }, "local checkpoint retired");
      return;
    }
    const member = pod && !pod.removed ? pod : null;
    const retiring = migratingAway(c!, this.node);
    const key = copyKey(c!, member, retiring);
    // A copy from before this start holds the container as of its version: current if nothing came since.
    if (have && have.key === null && have.logSeq === c!.version && JSON.stringify(have.retiring) === JSON.stringify(retiring)) have.key = key;
    if (have?.key === key) return;
    const writtenAt = await this.port.write(c!, member, retiring);
    this.copies.set(id, { writtenAt, key, retiring });
    if (!have) this.log.info({ container: id, name: c!.name }, "local checkpoint written");
    else if (retiring && !have.retiring) this.log.info({ container: id, toNode: retiring.toNode }, "local checkpoint marked: migrating away, not to be started offline");
  }
}
