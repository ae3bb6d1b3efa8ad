// The restart policy at work on this node: after one of its containers stopped (an exit, or a
// policy restart that failed to start), ask decideRestart and record the decision as
// ContainerRestartScheduled; when it is due, record ContainerStartRequested, which the executor
// performs like any start. The timers are only a cache of the log (restartDueAt), so a new daemon
// re-arms them from its replay, and every step re-checks the state it acts on.
import type { StoredEvent } from "../events/types.js";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { Projector } from "../projections/projector.js";
import { factKey, type Ctx } from "./command-service.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { NewEvent } from "../aggregates/container/decider.js";
import { decideRestart, type RestartDecision, type RestartInput } from "./restart-policy.js";

export interface RestartSchedulerDeps {
  node: string;
  projector: Projector;
  commands: ContainerCommands;
  /** Run a job in the container's queue (the executor's), in order with its other actions. */
  enqueue: (id: string, job: () => Promise<void>) => void;
}

export class RestartScheduler {
  private readonly timers = new Map<string, { dueAt: string; timer: NodeJS.Timeout }>();
  private readonly log = logger("restart");
  private stopped = false;

  constructor(private readonly d: RestartSchedulerDeps) {}

  /**
   * A container of ours stopped: schedule its restart if the policy says so. `key` names the fact
   * that prompted this (the run that ended, the start that failed), so the decision is stored
   * once however often it is asked. Call it from the container's queue.
   */
  async consider(
    id: string,
    key: string,
    o: { exitCode?: number; trigger?: RestartInput["trigger"] } = {},
  ): Promise<RestartDecision | null> {
    if (this.stopped) return null;
    // The actor says why: the policy on an exit, or the policy at daemon start.
    const actor = o.trigger === "boot" ? `berth/${this.d.node}/restart-policy/daemon-start` : `berth/${this.d.node}/restart-policy`;
    const ctx: Ctx = {
      node: this.d.node,
      actor,
      correlationId: id,
      causationId: null,
      requestId: factKey(id, "restart-policy", key),
    };
    let decision: RestartDecision | null = null;
    const out = await this.append(
      id,
      (s): NewEvent[] => {
        decision = null;
        if (!s || s.removed || s.node !== this.d.node || s.state !== "exited" || s.pending) return [];
        decision = decideRestart({
          policy: s.restartPolicy,
          exitCode: o.exitCode ?? s.exitCode ?? -1,
          stoppedByUser: s.stoppedByUser,
          attempt: s.restartAttempt,
          autoRemove: s.spec.autoRemove ?? false,
          trigger: o.trigger,
        });
        if (!decision.restart) return [];
        return [{ type: "ContainerRestartScheduled", data: { attempt: decision.attempt, delayMs: decision.delayMs } }];
      },
      ctx,
      "RestartScheduled",
    );
    const d = decision as RestartDecision | null;
    if (d) {
      if (d.restart) this.log.info({ container: id, attempt: d.attempt, delayMs: d.delayMs }, "restart scheduled");
      else this.log.debug({ container: id, reason: d.reason }, "no restart");
    }
    const c = this.d.projector.model.byId(id);
    if (c && awaitsRestart(c, this.d.node, c.restartDueAt)) this.arm(id, c.restartDueAt!, out[0]?.eventId ?? null, out[0]?.actor);
    return d;
  }

  /** After the replay: a timer for every container of ours whose restart is scheduled. */
  rearm(): number {
    let n = 0;
    for (const c of this.d.projector.model.containers.values()) {
      if (awaitsRestart(c, this.d.node, c.restartDueAt)) {
        this.arm(c.id, c.restartDueAt!, null);
        n++;
      }
    }
    if (n) this.log.info({ containers: n }, "restart timers re-armed");
    return n;
  }

  /** Clear every timer; the restarts stay in the log for the next daemon. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t.timer);
    this.timers.clear();
  }

  private append(id: string, decider: (s: ContainerState | null) => NewEvent[], ctx: Ctx, step: string): Promise<StoredEvent[]> {
    return this.d.commands.appendFact(id, decider, ctx, step, () => this.stopped);
  }

  private arm(id: string, dueAt: string, causationId: string | null, actor = `berth/${this.d.node}/restart-policy`): void {
    if (this.stopped) return;
    const prev = this.timers.get(id);
    if (prev?.dueAt === dueAt) return;
    if (prev) clearTimeout(prev.timer);
    // Already due (e.g. the daemon was down when it fell due) → now.
    const delay = Math.max(0, Date.parse(dueAt) - Date.now());
    const timer = setTimeout(() => this.fire(id, dueAt, causationId, actor), delay);
    this.timers.set(id, { dueAt, timer });
  }

  private fire(id: string, dueAt: string, causationId: string | null, actor: string): void {
    if (this.timers.get(id)?.dueAt === dueAt) this.timers.delete(id);
    if (this.stopped) return;
    this.d.enqueue(id, async () => {
      if (this.stopped) return;
      const c = this.d.projector.model.byId(id);
      // Cancelled, removed or started meanwhile: nothing to do.
      if (!c || !awaitsRestart(c, this.d.node, dueAt)) return;
      const ctx: Ctx = {
        node: this.d.node,
        actor,
        correlationId: causationId ?? id,
        causationId,
        requestId: factKey(id, "restart-start", dueAt),
      };
      await this.append(
        id,
        (s): NewEvent[] =>
          s && awaitsRestart(s, this.d.node, dueAt) ? [{ type: "ContainerStartRequested", data: { attempt: s.restartAttempt } }] : [],
        ctx,
        "StartRequested",
      );
    });
  }
}

/** Ours, waiting for its scheduled restart at `dueAt`, with nothing else in progress. */
function awaitsRestart(c: ContainerState, node: string, dueAt: string | null): boolean {
  return !c.removed && c.node === node && c.state === "restarting" && !c.pending && c.restartDueAt !== null && c.restartDueAt === dueAt;
}
