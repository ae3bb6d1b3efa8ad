// Keeps the node's local checkpoints current from the log (issue 11, story 1): a container of
// this node annotated berth.io/checkpoint=true (or a member of a pod so annotated) has a sanitized
// copy on this node's disk (runtime/local-checkpoints.ts), rewritten whenever what it holds
// changes in the log; a container that is removed, moves to another node or loses the annotation
// has its copy retired at once (the log is reachable: it says so). What a node does with its
// copies when the log is not reachable is checkpointer.ts's table.
import { wantsLocalCheckpoint } from "../shared/checkpoint-annotation.js";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { PodState } from "../aggregates/pod/index.js";
import type { Projector } from "../projections/projector.js";
import type { LocalCopyPort } from "./ports.js";

const CONTAINER = "berth.ev.container.";
const POD = "berth.ev.pod.";

/** Pure: whether `c` should have a local copy on `node` (`pod`: its pod, if a member). */
export function wantsCopy(c: ContainerState | undefined, node: string, pod?: PodState): boolean {
  if (!c || c.removed || c.node !== node) return false;
  return wantsLocalCheckpoint(c.annotations) || (!!pod && !pod.removed && wantsLocalCheckpoint(pod.spec.annotations));
}

/** What a copy holds of the state, but its time: the same key, no need to write it again. */
function copyKey(c: ContainerState, pod: string | null): string {
  return JSON.stringify([c.name, c.image, c.imageDigest, c.revision, c.ip, pod, c.spec]);
}

export class LocalCheckpointKeeper {
  private readonly log = logger("local-checkpoints");
  /** Copies on disk: when written, and the key of what they hold (null: read from disk, of version `logSeq`). */
  private readonly copies = new Map<string, { writtenAt: string; key: string | null; logSeq?: number }>();
  /** One sync at a time per container, in the order the log asked. */
  private readonly chains = new Map<string, Promise<void>>();
  private stopped = false;

  constructor(private readonly node: string, private readonly projector: Projector, private readonly port: LocalCopyPort) {}

  /** After recovery: every copy made or retired as the log says, then kept so as events come. */
  async start(): Promise<void> {
    for (const { id, writtenAt, logSeq } of await this.port.list()) this.copies.set(id, { writtenAt, key: null, logSeq });
    const ids = new Set([...this.copies.keys(), ...[...this.projector.model.containers.values()].filter((c) => c.node === this.node).map((c) => c.id)]);
    this.projector.onEvent((e) => {
      if (e.subject.startsWith(CONTAINER)) this.sync(e.subject.slice(CONTAINER.length));
      else if (e.subject.startsWith(POD)) for (const m of this.projector.model.membersOf(e.subject.slice(POD.length))) this.sync(m.id);
    });
    await Promise.all([...ids].map((id) => this.sync(id)));
  }

  stop(): void {
    this.stopped = true;
  }

  /** The copy of `id` on this node, if there is one. */
  info(id: string): { writtenAt: string } | null {
    const c = this.copies.get(id);
    return c ? { writtenAt: c.writtenAt } : null;
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
      await this.port.remove(id);
      this.copies.delete(id);
      this.log.info({ container: id }, "local checkpoint retired");
      return;
    }
    const podId = c!.spec.pod ?? null;
    const key = copyKey(c!, podId);
    // A copy from before this start holds the container as of its version: current if nothing came since.
    if (have && have.key === null && have.logSeq === c!.version) have.key = key;
    if (have?.key === key) return;
    const writtenAt = await this.port.write(c!, podId);
    this.copies.set(id, { writtenAt, key });
    if (!have) this.log.info({ container: id, name: c!.name }, "local checkpoint written");
  }
}
