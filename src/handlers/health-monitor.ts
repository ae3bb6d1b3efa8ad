// Runs the health checks of this node's running containers and records what they decide. One
// timer chain per container run, so probes of one container never overlap; the status comes
// from the log (a daemon restart resumes probing without resetting it), and only a change of
// status is appended. Becoming unhealthy applies `onFailure` as an ordinary intent, which the
// executor carries out like a user's command.
import { BerthError, ErrorCode } from "../shared/errors.js";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { Projector } from "../projections/projector.js";
import { nextState } from "../aggregates/container/transitions.js";
import type { Ctx } from "./command-service.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { NewEvent } from "../aggregates/container/decider.js";
import { healthConfig, inStartPeriod, nextHealth, probeOutput, unhealthyAction, type HealthConfig, type HealthView } from "./health.js";
import type { HealthHost, ProbeResult } from "./ports.js";


/** Probing state of one run of one container. */
interface Watch {
  id: string;
  /** The run being probed (its startedAt): a new run gets a new Watch. */
  run: string;
  /** Failures in a row; lives here, the log records only status changes. */
  streak: number;
  timer: NodeJS.Timeout | null;
  busy: Promise<void> | null;
  abort: AbortController;
}

const SUBJECT = "berth.ev.container.";

export class HealthMonitor {
  private readonly watches = new Map<string, Watch>();
  private readonly log = logger("health");
  private readonly actor: string;
  private stopped = false;

  constructor(
    private readonly node: string,
    private readonly projector: Projector,
    private readonly commands: ContainerCommands,
    private readonly host: HealthHost,
  ) {
    this.actor = `berth/${node}/health`;
  }

  /** Follow the log from now on, and resume probing every running container of ours. */
  start(): void {
    this.projector.onEvent((e) => {
      if (e.subject.startsWith(SUBJECT)) this.sync(e.subject.slice(SUBJECT.length));
    });
    for (const id of [...this.projector.model.containers.keys()]) this.sync(id);
  }

  /** Stop every timer and end the probes in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    const ending = [...this.watches.values()].map((w) => this.end(w));
    this.watches.clear();
    await Promise.allSettled(ending);
  }

  /** Ids of the containers being probed. */
  watching(): string[] {
    return [...this.watches.keys()];
  }

  private wanted(c: ContainerState | undefined): c is ContainerState & { startedAt: string } {
    return (
      !!c && c.node === this.node && !!c.spec.healthcheck && c.startedAt !== null &&
      (c.state === "running" || c.state === "paused")
    );
  }

  /** Start, keep or end probing `id` as the log says now. */
  private sync(id: string): void {
    if (this.stopped) return;
    const c = this.projector.model.byId(id);
    const w = this.watches.get(id);
    const want = this.wanted(c);
    if (w && (!want || w.run !== c.startedAt)) {
      this.watches.delete(id);
      void this.end(w);
    }
    if (!want || this.watches.get(id)) return;
    // An unhealthy status read back from the log stays unhealthy until a probe succeeds.
    const retries = healthConfig(c.spec.healthcheck!).retries;
    const fresh: Watch = {
      id, run: c.startedAt, streak: c.health === "unhealthy" ? retries : 0, timer: null, busy: null, abort: new AbortController(),
    };
    this.watches.set(id, fresh);
    this.schedule(fresh);
  }

  private end(w: Watch): Promise<void> {
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    w.abort.abort();
    return w.busy ?? Promise.resolve();
  }

  private live(w: Watch): boolean {
    return !this.stopped && this.watches.get(w.id) === w;
  }

  /** The next probe, intervalMs after the last one ended (Docker's rhythm). */
  private schedule(w: Watch): void {
    const hc = this.projector.model.byId(w.id)?.spec.healthcheck;
    if (!hc || !this.live(w)) return;
    w.timer = setTimeout(() => {
      w.timer = null;
      w.busy = this.probe(w)
        .catch((err) => this.log.error({ err, container: w.id }, "health probe failed"))
        .finally(() => {
          w.busy = null;
          this.schedule(w);
        });
    }, healthConfig(hc).intervalMs);
    w.timer.unref();
  }

  private async probe(w: Watch): Promise<void> {
    const c = this.projector.model.byId(w.id);
    // Paused: exec would block on the frozen cgroup. Pending intent: the state is in flux (but an
    // upgrade's new revision is probed: its health gate needs the answer).
    if (!this.wanted(c) || c.startedAt !== w.run || c.state !== "running" || inFlux(c)) return;
    const hc = healthConfig(c.spec.healthcheck!);
    const t0 = Date.now();
    let r: ProbeResult;
    try {
      r = await this.host.exec(c.id, hc.argv, { timeoutMs: hc.timeoutMs, signal: w.abort.signal });
    } catch (err) {
      r = { exitCode: -1, stdout: "", stderr: (err as Error).message, truncated: false, timedOut: false };
    }
    if (!this.live(w)) return;
    const ok = r.exitCode === 0;
    // A probe that failed because the container is going away says nothing about its health.
    if (!ok && (await this.host.state(c.id).catch(() => null))?.status !== "running") return;
    const now = this.projector.model.byId(w.id);
    if (!this.live(w) || !this.wanted(now) || now.startedAt !== w.run || now.state !== "running" || inFlux(now)) return;

    const prev: HealthView = { status: now.health === "none" ? "starting" : now.health, failingStreak: w.streak };
    const next = nextHealth(prev, { ok }, { retries: hc.retries, inStartPeriod: inStartPeriod(t0, w.run, hc.startPeriodMs) });
    w.streak = next.failingStreak;
    this.log.debug({ container: w.id, ok, exitCode: r.exitCode, timedOut: r.timedOut, status: next.status, streak: next.failingStreak }, "probe");
    let cause: string | null = null;
    if (next.changed) cause = await this.record(now, next, probeOutput(r, hc));
    if (next.status === "unhealthy") await this.onUnhealthy(w, hc, cause);
  }

  /**
   * Append the new status. Its id is keyed by the run, the version it was decided on and the
   * status: the same decision made twice is stored once, and a later flip back to the same
   * status (another version) is a new fact.
   */
  private async record(c: ContainerState, next: HealthView, output: string): Promise<string | null> {
    const key = `health:${c.id}@${c.startedAt}#${c.version}:${next.status}`;
    const ctx: Ctx = { node: this.node, actor: this.actor, correlationId: key, causationId: null, requestId: key };
    const ev: NewEvent = {
      type: "ContainerHealthChanged",
      data: { status: next.status, failingStreak: next.failingStreak, ...(output ? { output } : {}) },
    };
    const out = await this.commands.appendDecided(
      c.id,
      (s) =>
        s && s.startedAt === c.startedAt && s.health !== next.status && nextState(s.state, ev.type) !== null ? [ev] : [],
      ctx,
      ev.type,
    );
    if (out.length) this.log.info({ container: c.id, name: c.name, status: next.status, streak: next.failingStreak }, `container is ${next.status}`);
    return out[0]?.eventId ?? null;
  }

  /**
   * Apply onFailure while the container is unhealthy, once per run: the intent's id is keyed by
   * the run, so a daemon that died between recording `unhealthy` and the intent catches up at
   * its next probe, and a repeat is stored once.
   */
  private async onUnhealthy(w: Watch, hc: HealthConfig, cause: string | null): Promise<void> {
    const c = this.projector.model.byId(w.id);
    if (!c || c.startedAt !== w.run || c.state !== "running" || c.pending) return;
    const cmd = unhealthyAction(hc.onFailure, c.spec);
    if (!cmd) return;
    const key = `health-${hc.onFailure}:${c.id}@${c.startedAt}`;
    const ctx: Ctx = { node: this.node, actor: this.actor, correlationId: key, causationId: cause, requestId: key };
    try {
      await this.commands.handle(c.id, cmd, ctx);
      this.log.info({ container: c.id, name: c.name, action: hc.onFailure }, "unhealthy: onFailure applied");
    } catch (err) {
      if (err instanceof BerthError && err.code === ErrorCode.Conflict) {
        this.log.info({ container: c.id, err: err.message }, "unhealthy: onFailure not applied now");
        return;
      }
      throw err;
    }
  }
}

const inFlux = (c: ContainerState) => c.pending !== null && c.upgrade === null;
