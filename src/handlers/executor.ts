// The owning node's hands: turns intents on this node's containers into host actions and records
// their outcomes. One queue per container keeps its actions and exits in order; every outcome is
// checked against the transition table before it is appended, and exits carry stable event ids
// so that a fact seen twice is stored once.
import { BerthError, ErrorCode, toBerthError } from "../shared/errors.js";
import { armed, failAt, fault } from "../fault.js";
import { Transform, type Readable } from "node:stream";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { Projector } from "../projections/projector.js";
import { nextState } from "../aggregates/container/transitions.js";
import type { ArchiveSource, ExitInfo } from "../shared/host-facts.js";
import { factKey, type Ctx } from "./command-service.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { NewEvent } from "../aggregates/container/decider.js";
import { RestartScheduler } from "./restart-scheduler.js";
import type { HostOps, NetPlan } from "./ports.js";
import { networkMode, volumesOf } from "../shared/spec.js";
import { DEFAULT_SHARE, type PodState } from "../aggregates/pod/index.js";
import { finish, keptAfter, keptDuring, upgradeNext } from "../aggregates/container/upgrade.js";
import { retire, type CheckpointCommands } from "../aggregates/checkpoint/index.js";
import type { CheckpointCreatedData, CheckpointOptions, MigrationTransfer } from "../events/types.js";
import type { DumpStats } from "../shared/host-facts.js";
import type { ArchivePort, DirectArchivePort } from "./ports.js";
import pRetry from "p-retry";
import type { NameCommands } from "../aggregates/name/index.js";
import { releaseName } from "./names.js";
import { watchTargets } from "./migration-watch.js";

/** A dump's options and id; a migration's names the volumes that move with it. */
type DumpRequest = CheckpointOptions & { checkpointId: string; volumes?: readonly string[] };

type NetPlanShare = Extract<NetPlan, { kind: "pod" }>["share"];

const KILL_GRACE_MS = 10_000;
/** How long a migration's target keeps trying to take a direct archive from its source. */
const DIRECT_FETCH_MS = Number(process.env.BERTH_DIRECT_FETCH_MS ?? 60_000);
/** How long a source asked for its archive waits for its own tail to fold the dump the target has seen. */
const DUMPED_WAIT_MS = 3_000;

export class Executor {
  private readonly queues = new Map<string, Promise<void>>();
  /** Health-gate timers of sagas in progress, by container. */
  private readonly gates = new Map<string, NodeJS.Timeout>();
  private readonly log = logger("executor");
  private stopped = false;

  constructor(
    private readonly node: string,
    private readonly projector: Projector,
    private readonly commands: ContainerCommands,
    private readonly host: HostOps,
    /**
     * Checkpoints: their records (the checkpoint aggregate) and archives (the object store);
     * `direct`, archives straight from another daemon, and `transfer`, how this node's
     * migrations send theirs (default "direct" when `direct` is given).
     */
    private readonly cp?: { checkpoints: CheckpointCommands; archive: ArchivePort; keep?: number; direct?: DirectArchivePort; transfer?: MigrationTransfer },
    /** Names held cluster-wide: a removed container's is released. */
    private readonly names?: NameCommands,
    /** Whether a node's daemon answers (heartbeats): a migration's target that died is watched. */
    private readonly nodeUp?: (node: string) => boolean,
  ) {
    this.restarts = new RestartScheduler({ node, projector, commands, enqueue: (id, job) => this.enqueue(id, job) });
  }

  /** The restart policy's timers; the daemon re-arms them after its replay. */
  readonly restarts: RestartScheduler;
  private stopWatch: (() => void) | null = null;

  /** Listen for intents, and pick up intents left pending by an earlier run of this node. */
  start(): void {
    this.stopWatch = watchTargets(this.nodeUp, () => this.dumpedHere(), (id, reason) => this.takeBack(id, reason));
    this.projector.onEvent((e, model) => {
      if (!e.subject.startsWith("berth.ev.container.")) return;
      const c = model.byId(e.subject.slice("berth.ev.container.".length));
      if (!c) return;
      // A migration: the target restores once the source has dumped; the source clears its host
      // once the container runs on the target.
      if (e.type === "ContainerMigrationDumped" && c.migration?.toNode === this.node) {
        const eid = c.pending!.eventId;
        this.enqueue(c.id, () => this.migrateInLeg(c.id, eid));
      }
      if (e.type === "ContainerMigrated" && e.data.fromNode === this.node) {
        const checkpointId = e.data.checkpointId;
        this.enqueue(c.id, () => this.migratedAway(c.id, checkpointId));
      }
      if (c.node !== this.node) return;
      if (c.migration && c.pending && e.type === "ContainerMigrationRestoreFailed") {
        const eid = c.pending.eventId;
        this.enqueue(c.id, () => this.perform(c.id, eid));
      }
      if (c.pending && c.pending.eventId === e.eventId) this.enqueue(c.id, () => this.perform(c.id, e.eventId));
      // A saga moves on when its container exits or changes health (the health gate).
      else if (c.upgrade && c.pending && (e.type === "ContainerExited" || e.type === "ContainerHealthChanged")) {
        const eid = c.pending.eventId;
        this.enqueue(c.id, () => this.perform(c.id, eid));
      }
    });
    for (const c of this.projector.model.containers.values()) {
      if (c.node === this.node && c.pending) {
        const eid = c.pending.eventId;
        this.enqueue(c.id, () => this.perform(c.id, eid));
      }
      // A migration to this node whose dump is stored, not yet restored here.
      if (c.migration?.toNode === this.node && c.migration.dumpedAt && !c.migration.restoreFailed && c.pending) {
        const eid = c.pending.eventId;
        this.enqueue(c.id, () => this.migrateInLeg(c.id, eid));
      }
    }
  }

  /**
   * An exit file appeared for a container of ours. It is read again when the job runs: by then a
   * restart may have replaced it, and a stale exit must not end the new run.
   */
  exited(id: string): void {
    this.enqueue(id, async () => {
      const info = await this.host.readExit(id);
      if (info) await this.recordExit(id, info);
    });
  }

  /**
   * The container's conmon is gone and left no exit file (host reboot, conmon killed): record
   * exit code -1, as podman does, unless an exit file turned up meanwhile.
   */
  vanished(id: string): void {
    this.enqueue(id, async () => {
      const info = (await this.host.readExit(id)) ?? { exitCode: -1, oomKilled: false, exitedAt: new Date().toISOString() };
      await this.recordExit(id, info);
    });
  }

  /**
   * At daemon start, ask the restart policy again about an exited container, as a daemon start
   * (trigger "boot": where `always` and `unless-stopped` differ, Docker's rule). Keyed by the run
   * it ended, so the decision is stored once however often the daemon starts before it runs again.
   */
  reconsider(id: string): void {
    this.enqueue(id, async () => {
      const c = this.current(id);
      // A checkpointed one (or a member of a checkpointed pod) waits for its restore: a fresh
      // start would throw its memory state away.
      const podCheckpointed = c?.spec.pod ? this.projector.model.pods.get(c.spec.pod)?.checkpointed : null;
      if (c?.node === this.node && c.state === "exited" && !c.pending && !c.checkpointed && !podCheckpointed) {
        await this.restarts.consider(id, `boot@${c.startedAt}`, { trigger: "boot" });
      }
    });
  }

  /** Resolves once every job queued so far (for every container) has run. */
  async idle(): Promise<void> {
    while (this.queues.size) await Promise.allSettled([...this.queues.values()]);
  }

  async drain(): Promise<void> {
    this.stopped = true;
    this.restarts.stop();
    this.stopWatch?.();
    for (const t of this.gates.values()) clearTimeout(t);
    this.gates.clear();
    await Promise.allSettled([...this.queues.values()]);
  }

  private enqueue(id: string, job: () => Promise<void>): void {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev
      .then(() => (this.stopped ? undefined : job()))
      .catch((err) => this.log.error({ err, container: id }, "container job failed"));
    this.queues.set(id, next);
    void next.finally(() => {
      if (this.queues.get(id) === next) this.queues.delete(id);
    });
  }

  private current(id: string): ContainerState | undefined {
    return this.projector.model.byId(id);
  }

  /** Perform the pending intent `intentId`, if it is still the pending one. */
  private async perform(id: string, intentId: string): Promise<void> {
    const c = this.current(id);
    if (!c?.pending || c.pending.eventId !== intentId) return;
    const intent = c.pending;
    const ctx: Ctx = { node: this.node, actor: `berth/${this.node}`, correlationId: intentId, causationId: intentId };
    const log = this.log.child({ container: id, name: c.name, intent: intent.type, correlationId: intentId });
    const t0 = performance.now();
    const action = intent.type.replace(/^Container/, "").replace(/Requested$/, "").toLowerCase();
    try {
      switch (intent.type) {
        case "ContainerStartRequested":
          await this.startLeg(c, ctx);
          break;
        case "ContainerStopRequested": {
          const d = intent.data as { signal: string; timeoutSec: number };
          await this.stopLeg(c, d.signal, d.timeoutSec, ctx);
          break;
        }
        case "ContainerKillRequested": {
          const sig = (intent.data as { signal: string }).signal;
          // Re-performed after a crash: the container may be gone already; its exit is recorded.
          if (c.state !== "running" && c.state !== "paused") {
            await this.outcome(id, { type: "ContainerSignaled", data: { signal: sig } }, ctx, intentKey(ctx));
            break;
          }
          // A frozen process gets a SIGKILL only when thawed: `kill --all` freezes, signals, thaws.
          await this.host.signal(id, sig, c.state === "paused" && /^(SIG)?KILL$|^9$/.test(sig));
          // A fatal signal usually lands at once; record that exit before answering.
          const info = await this.host.waitExit(id, 1_000);
          if (info) await this.recordExit(id, info, ctx);
          await this.outcome(id, { type: "ContainerSignaled", data: { signal: sig } }, ctx, intentKey(ctx));
          break;
        }
        case "ContainerRestartRequested": {
          const d = intent.data as { timeoutSec: number };
          if (c.state === "running" || c.state === "paused") {
            await this.stopLeg(c, c.spec.stopSignal ?? "SIGTERM", d.timeoutSec, ctx);
          }
          await this.startLeg(this.current(id)!, ctx);
          break;
        }
        case "ContainerPauseRequested":
          if (c.state !== "running") throw new BerthError(ErrorCode.Conflict, `container is ${c.state}`);
          // Idempotent: a pause done before a crash is not done twice.
          if ((await this.host.status(id)) !== "paused") await this.host.pause(id);
          await this.outcome(id, { type: "ContainerPaused", data: {} }, ctx, intentKey(ctx));
          break;
        case "ContainerUnpauseRequested":
          if (c.state !== "paused") throw new BerthError(ErrorCode.Conflict, `container is ${c.state}`);
          if ((await this.host.status(id)) === "paused") await this.host.resume(id);
          await this.outcome(id, { type: "ContainerUnpaused", data: {} }, ctx, intentKey(ctx));
          break;
        case "ContainerRemoveRequested":
          if (await this.host.isRunning(id)) {
            await this.host.signal(id, "SIGKILL").catch(() => undefined);
            const info = await this.host.waitExit(id, KILL_GRACE_MS);
            if (info) await this.recordExit(id, info, ctx);
          }
          {
            // The attachment goes first, while its netns is there: DEL then removes every rule.
            // After a crash between the DEL and its record, the log's IP says what was released.
            const ip = (await this.host.detachNetwork(id)) ?? (c.spec.pod ? null : c.ip);
            if (ip) fault("after-detach");
            if (ip) await this.outcome(id, { type: "ContainerNetworkDetached", data: { ip } }, ctx, intentKey(ctx));
          }
          await this.host.cleanup(id);
          // The name is free again, cluster-wide, before the removal is: whoever sees it removed
          // can take its name at once (until then the removing container holds it in every model).
          await releaseName(this.names, "container", c.name, id, ctx, () => this.stopped);
          await this.outcome(id, { type: "ContainerRemoved", data: {} }, ctx, intentKey(ctx));
          break;
        case "ContainerCheckpointRequested":
          await this.checkpointLeg(c, intent.data as unknown as CheckpointOptions & { checkpointId: string }, ctx);
          break;
        case "ContainerRestoreRequested":
          await this.restoreLeg(c, (intent.data as { checkpointId: string }).checkpointId, ctx);
          break;
        case "ContainerMigrationRequested":
          if (!(await this.migrateOutLeg(c, ctx))) return;
          break;
        case "ContainerUpgradeRequested":
        case "ContainerRollbackRequested":
          if (!(await this.sagaLeg(id, intentId, ctx))) return;
          break;
        default:
          log.warn("no action for this intent");
          return;
      }
      log.info({ ms: Math.round(performance.now() - t0) }, `${action} done`);
    } catch (err) {
      const e = toBerthError(err);
      log.warn({ err: e.message, ms: Math.round(performance.now() - t0) }, `${action} failed`);
      const failed: NewEvent =
        intent.type === "ContainerStartRequested" || intent.type === "ContainerRestartRequested" || intent.type === "ContainerRestoreRequested"
          ? { type: "ContainerStartFailed", data: { error: e.message } }
          : { type: "ContainerActionFailed", data: { action, error: e.message } };
      await this.outcome(id, failed, ctx, intentKey(ctx)).catch((err2) =>
        log.error({ err: err2 }, "could not record the failure"),
      );
      // A policy restart that cannot start goes through the policy again: backoff and retries.
      if (intent.type === "ContainerStartRequested" && typeof intent.data.attempt === "number") {
        await this.restarts.consider(id, `startfailed@${intentId}`, { exitCode: -1 });
      }
    }
  }

  /**
   * Carry an upgrade or rollback as far as it goes now: each step is what `upgradeNext` says from
   * the state the log gives, so a daemon that died half-way takes up where the log says it was.
   * True once the saga's outcome is recorded; false while it waits (the health gate).
   */
  private async sagaLeg(id: string, intentId: string, ctx: Ctx): Promise<boolean> {
    clearTimeout(this.gates.get(id));
    this.gates.delete(id);
    for (;;) {
      const c = this.current(id);
      if (!c?.upgrade || c.pending?.eventId !== intentId || this.stopped) return false;
      const step = upgradeNext(c, Date.now());
      if (!step) return false;
      const u = c.upgrade;
      try {
        switch (step.kind) {
          case "stop":
            // The next rootfs is mounted while the old process still runs: the downtime is a stop and a start.
            await this.host.stageRevision(id, step.stage);
            await this.stopLeg(c, c.spec.stopSignal ?? "SIGTERM", c.spec.stopTimeoutSec ?? 10, ctx);
            fault("upgrade-stopped");
            break;
          case "activate":
            await this.host.pruneRevisions(id, keptDuring(c));
            await this.host.activateRevision(id, step.revision);
            fault("upgrade-layer");
            await this.outcome(id, { type: "ContainerRevisionActivated", data: { revision: step.revision.revision } }, ctx, `${intentKey(ctx)}@${u.failed === null ? "to" : "back"}`);
            break;
          case "start": {
            const r = await this.host.prepareAndStart(c, this.netPlan(c));
            fault("upgrade-started");
            const data = r.ip ? { pid: r.pid, startedAt: r.startedAt, ip: r.ip } : { pid: r.pid, startedAt: r.startedAt };
            await this.outcome(id, { type: "ContainerStarted", data }, ctx, `${intentKey(ctx)}@${r.startedAt}`);
            break;
          }
          case "gate": {
            const t = setTimeout(() => this.enqueue(id, () => this.perform(id, intentId)), Math.max(0, step.untilMs - Date.now()) + 20);
            t.unref();
            this.gates.set(id, t);
            fault("upgrade-gate");
            return false;
          }
          case "fail":
            this.log.warn({ container: id, reason: step.reason }, "upgrade failed; rolling back");
            await this.outcome(id, { type: "ContainerUpgradeFailed", data: { reason: step.reason } }, ctx, intentKey(ctx));
            fault("upgrade-rollback");
            break;
          case "finish": {
            fault("upgrade-settling");
            await this.outcome(id, step.event, ctx, intentKey(ctx));
            // After the answer: a layer left by a crash here goes at the next saga's activation.
            await this.host.pruneRevisions(id, keptAfter(c)).catch((err) => this.log.warn({ err, container: id }, "could not remove old revisions' layers"));
            const after = this.current(id);
            if (after?.state === "exited" && !after.pending) await this.restarts.consider(id, `saga@${intentId}`);
            return true;
          }
        }
      } catch (err) {
        const msg = toBerthError(err).message;
        if (u.kind === "upgrade" && u.failed === null) {
          // The new revision could not be made or started: the saga goes back.
          await this.outcome(id, { type: "ContainerUpgradeFailed", data: { reason: `${step.kind}: ${msg}` } }, ctx, intentKey(ctx));
          fault("upgrade-rollback");
        } else if (step.kind === "start") {
          // Back on the old revision, which does not start either: the saga ends, the container stopped.
          await this.outcome(id, finish(c, `the revision it went back to did not start: ${msg}`), ctx, intentKey(ctx));
          await this.host.pruneRevisions(id, keptAfter(c)).catch((err2) => this.log.warn({ err: err2, container: id }, "could not remove old revisions' layers"));
          return true;
        } else {
          throw err;
        }
      }
    }
  }

  /**
   * The checkpoint saga: CRIU dump (with the rw layer) into a local dir → the exit it caused →
   * the archive into the object store → its record (CheckpointCreated) → the retention rule →
   * the outcome. Re-performed after a crash, each step finds what the last run left: a
   * recorded checkpoint, a finished dump on disk (CRIU outlives the daemon), or a process to dump.
   */
  private async checkpointLeg(c: ContainerState, d: CheckpointOptions & { checkpointId: string }, ctx: Ctx): Promise<void> {
    if (!this.cp) throw new BerthError(ErrorCode.Unavailable, "checkpoints need the object store, which this daemon has not opened");
    if (d.preDump) {
      // Memory only, the container runs on: no archive, no record; its next checkpoint builds on it.
      const { stats } = await this.host.preDump(c.id, c.startedAt ?? "", d);
      const data = { checkpointId: d.checkpointId, leaveRunning: true, preDump: true, frozenMs: Math.round(stats?.frozenMs ?? 0) };
      await this.outcome(c.id, { type: "ContainerCheckpointed", data }, ctx, intentKey(ctx));
      return;
    }
    await this.dumpAndStore(c, d, ctx);
    // A pod checkpoint's member goes with its pod checkpoint, by the pod's rule.
    if (!d.partOf) await this.retire(c.id, ctx);
    await this.outcome(c.id, { type: "ContainerCheckpointed", data: { checkpointId: d.checkpointId, leaveRunning: d.leaveRunning } }, ctx, intentKey(ctx));
  }

  /**
   * CRIU's dump (with the rw layer) into a local dir → the exit it caused → the archive into the
   * object store → its record (CheckpointCreated) → the local dir goes. Each step finds what a
   * killed daemon left: a recorded checkpoint, a finished dump on disk (CRIU outlives the daemon),
   * or a process to dump. CRIU's stats when this run dumped.
   */
  /**
   * CRIU's dump (with the rw layer) into the checkpoint's local dir, and the exit it caused
   * recorded. Idempotent: a finished dump on disk is taken as it is.
   */
  private async dumpHere(c: ContainerState, d: DumpRequest, ctx: Ctx): Promise<{ stats: DumpStats | null; dumpMs: number; exitMs: number }> {
    const t0 = performance.now();
    const meta = { container: c.id, name: c.name, image: c.image, imageDigest: c.imageDigest, spec: c.spec, ip: c.ip, node: this.node };
    const dumped = await this.host.checkpoint(c.id, d.checkpointId, { ...d, runStartedAt: c.startedAt }, meta).catch(async (err) => {
      // CRIU let the container run on (it resumes what it froze): nothing of the attempt stays.
      await this.host.removeCheckpointDir(d.checkpointId).catch(() => undefined);
      throw err;
    });
    const t1 = performance.now();
    fault("checkpoint-dumped");
    if (!d.leaveRunning) {
      // The dump ended the process: record that exit (conmon writes it) before anything else.
      const info = await this.host.waitExit(c.id, KILL_GRACE_MS);
      if (info) await this.recordExit(c.id, info, ctx);
    }
    return { stats: dumped.stats, dumpMs: t1 - t0, exitMs: performance.now() - t1 };
  }

  private async dumpAndStore(c: ContainerState, d: DumpRequest, ctx: Ctx): Promise<{ stats: DumpStats | null }> {
    const { checkpoints, archive } = this.cp!;
    const t0 = performance.now();
    let stats: DumpStats | null = null;
    if (!this.projector.model.checkpoints.get(d.checkpointId)) {
      const here = await this.dumpHere(c, d, ctx);
      stats = here.stats;
      const tUpload = performance.now();
      const stored = await archive.put(d.checkpointId, probed(this.host.packCheckpoint(d.checkpointId)));
      const uploadMs = Math.round(performance.now() - tUpload);
      fault("checkpoint-uploaded");
      const data: CheckpointCreatedData = {
        checkpointId: d.checkpointId, container: c.id, containerName: c.name, pod: c.spec.pod ?? null, node: this.node,
        image: c.image, imageDigest: c.imageDigest, spec: c.spec, ...(c.ip ? { ip: c.ip } : {}),
        sizeBytes: stored.sizeBytes, digest: stored.digest, durationMs: Math.round(performance.now() - t0),
        frozenMs: Math.round(stats?.frozenMs ?? 0), dumpMs: Math.round(here.dumpMs), uploadMs,
        leaveRunning: d.leaveRunning, tcpEstablished: d.tcpEstablished,
        ...(d.partOf ? { partOf: d.partOf } : {}),
        ...(stats ? { stats } : {}),
      };
      await checkpoints.appendFact(d.checkpointId, (s) => (s ? [] : [{ type: "CheckpointCreated", data }]),
        { ...ctx, requestId: factKey(d.checkpointId, "CheckpointCreated", d.checkpointId) }, "CheckpointCreated", () => this.stopped);
      this.log.info({ container: c.id, dumpMs: data.dumpMs, exitMs: Math.round(here.exitMs), uploadMs, totalMs: Math.round(performance.now() - t0) }, "dumped and stored");
    }
    await this.host.removeCheckpointDir(d.checkpointId);
    return { stats };
  }

  /** The retention rule: a container keeps its newest few checkpoints; older archives go. */
  private async retire(container: string, ctx: Ctx): Promise<void> {
    const { checkpoints, archive, keep } = this.cp!;
    for (const old of retire([...this.projector.model.checkpoints.values()], container, keep)) {
      await archive.remove(old);
      await checkpoints.appendFact(old, (s) => (s && !s.removed ? [{ type: "CheckpointRemoved", data: { checkpointId: old, reason: "retention" } }] : []),
        { ...ctx, requestId: factKey(old, "CheckpointRemoved", "retention") }, "CheckpointRemoved", () => this.stopped);
    }
  }

  /**
   * The restore: the archive from the object store (its digest checked) → the rw layer → CRIU
   * under conmon in the container's network → ContainerRestored, and CheckpointRestored on the
   * checkpoint's record.
   */
  private async restoreLeg(c: ContainerState, checkpointId: string, ctx: Ctx): Promise<void> {
    if (!this.cp) throw new BerthError(ErrorCode.Unavailable, "checkpoints need the object store, which this daemon has not opened");
    const rec = this.projector.model.checkpoints.get(checkpointId);
    if (!rec || rec.removed) throw new BerthError(ErrorCode.NotFound, `checkpoint ${checkpointId} is gone`);
    const t0 = performance.now();
    const r = await this.fetchAndRestore(c, checkpointId, this.netPlan(c), rec.tcpEstablished);
    const restored = { checkpointId, pid: r.pid, startedAt: r.startedAt, ...(r.ip ? { ip: r.ip } : {}), ...(r.lazyPages ? { lazyPages: true } : {}) };
    await this.outcome(c.id, { type: "ContainerRestored", data: restored }, ctx, `${intentKey(ctx)}@${r.startedAt}`);
    await this.cp.checkpoints.appendFact(checkpointId, (s) => (s && !s.removed ? [{ type: "CheckpointRestored", data: { checkpointId, container: c.id, durationMs: Math.round(performance.now() - t0) } }] : []),
      { ...ctx, requestId: factKey(checkpointId, "CheckpointRestored", intentKey(ctx)) }, "CheckpointRestored", () => this.stopped);
  }

  /**
   * The migration's source side. First the dump (a checkpoint without leaveRunning, after a
   * pre-copy round when asked) into the object store, then ContainerMigrationDumped: the
   * target's turn (false: the saga goes on elsewhere). If the target reports it could not
   * restore, the compensation: restore here from the same checkpoint → MigrationFailed.
   */
  private async migrateOutLeg(c: ContainerState, ctx: Ctx): Promise<boolean> {
    const m = c.migration;
    if (!m || !this.cp) throw new BerthError(ErrorCode.Unavailable, "migrations need the object store, which this daemon has not opened");
    if (m.restoreFailed) {
      // A direct transfer's archive never left this node: it is restored from the local dir.
      const r = m.transfer === "direct" ? await this.restoreLocal(c, m.checkpointId, this.netPlan(c)) : await this.fetchAndRestore(c, m.checkpointId, this.netPlan(c));
      const data = { checkpointId: m.checkpointId, node: this.node, reason: m.restoreFailed, compensated: true, pid: r.pid, startedAt: r.startedAt, ...(r.ip ? { ip: r.ip } : {}) };
      fault("migrate-compensated");
      await this.outcome(c.id, { type: "MigrationFailed", data }, ctx, `${intentKey(ctx)}@compensated`);
      await this.settleLeavingVolumes();
      return true;
    }
    if (m.dumpedAt) return false;
    if (m.preCopy) await this.host.preDump(c.id, c.startedAt ?? "", { leaveRunning: true, tcpEstablished: false, fileLocks: false });
    const dumpedAt = new Date().toISOString();
    // Its volumes go with it: tarred after the dump (the process is gone), placed on the target.
    const d = { checkpointId: m.checkpointId, leaveRunning: false, tcpEstablished: false, fileLocks: false, volumes: volumesOf(c.spec) };
    // Direct: the dump stays in the local dir, which the target reads through this daemon
    // (archiveFor) and the compensation restores from; it goes when the saga is over.
    const transfer = this.migrationTransfer();
    const { stats } = transfer === "direct" ? await this.dumpHere(c, d, ctx) : await this.dumpAndStore(c, d, ctx);
    fault("migrate-dumped");
    await this.outcome(c.id, { type: "ContainerMigrationDumped", data: { checkpointId: m.checkpointId, dumpedAt, frozenMs: Math.round(stats?.frozenMs ?? 0), transfer } }, ctx, intentKey(ctx));
    return false;
  }

  /**
   * The migration's target side: the archive from the object store → the bundle and network of
   * this node (a new IP in its subnet) → CRIU restore → ContainerMigrated, which makes this node
   * the owner. A failure is reported to the source (ContainerMigrationRestoreFailed), and what
   * this host got of it goes.
   */
  private async migrateInLeg(id: string, intentId: string): Promise<void> {
    const c = this.current(id);
    const m = c?.migration;
    if (!c || !m || m.toNode !== this.node || !m.dumpedAt || m.restoreFailed || c.pending?.eventId !== intentId || c.state !== "exited") return;
    const ctx: Ctx = { node: this.node, actor: `berth/${this.node}`, correlationId: intentId, causationId: intentId };
    try {
      // Its old IP is the source's subnet's: here it takes one of this node's.
      const here: ContainerState = { ...c, node: this.node, ip: null, spec: { ...c.spec, node: this.node, ...(c.spec.network ? { network: { ...c.spec.network, ip: undefined } } : {}) } };
      failAt("migrate-restore");
      const r = m.transfer === "direct" ? await this.fetchDirectAndRestore(here, m.fromNode, m.checkpointId, this.netPlan(here)) : await this.fetchAndRestore(here, m.checkpointId, this.netPlan(here), false, true);
      fault("migrate-restored");
      const downtimeMs = Math.max(0, Date.parse(r.startedAt) - Date.parse(m.dumpedAt));
      const data = { checkpointId: m.checkpointId, fromNode: m.fromNode, toNode: this.node, downtimeMs, pid: r.pid, startedAt: r.startedAt, ...(r.ip ? { ip: r.ip } : {}), ...(r.lazyPages ? { lazyPages: true } : {}) };
      const moved = await this.commands.appendFact(id, (s) => (s?.migration?.checkpointId === m.checkpointId && !s.migration.restoreFailed && s.state === "exited" ? [{ type: "ContainerMigrated", data }] : []),
        { ...ctx, requestId: factKey(id, "ContainerMigrated", m.checkpointId) }, "ContainerMigrated", () => this.stopped);
      if (!moved.length && this.current(id)?.node !== this.node) {
        // The saga ended otherwise meanwhile (the source took it back): it must not run here too.
        this.log.warn({ container: id }, "restored here, but the migration ended otherwise: removing it from this host");
        await this.discard(id);
        await this.host.settleVolumes(m.checkpointId, false);
        return;
      }
      await this.host.settleVolumes(m.checkpointId, true);
      this.log.info({ container: id, from: m.fromNode, downtimeMs }, "migrated here");
    } catch (err) {
      const reason = toBerthError(err).message;
      this.log.warn({ container: id, from: m.fromNode, reason }, "could not restore the migrating container here; its source restores it");
      await this.host.detachNetwork(id).catch(() => undefined);
      await this.host.cleanup(id).catch(() => undefined);
      await this.host.settleVolumes(m.checkpointId, false).catch(() => undefined);
      await this.commands.appendFact(id, (s) => (s?.migration?.checkpointId === m.checkpointId && !s.migration.restoreFailed ? [{ type: "ContainerMigrationRestoreFailed", data: { checkpointId: m.checkpointId, node: this.node, reason } }] : []),
        { ...ctx, requestId: factKey(id, "ContainerMigrationRestoreFailed", m.checkpointId) }, "ContainerMigrationRestoreFailed", () => this.stopped);
    }
  }

  /**
   * A member of a pod migrating here, restored into the pod's sandbox on this node (`pod`: the pod
   * as it is here, its IP this node's); the pod migration records it (pod-migrate.ts).
   */
  async restoreMigratingMember(id: string, checkpointId: string, pod: PodState): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }> {
    const c = this.current(id);
    if (!c) throw new BerthError(ErrorCode.NotFound, `container ${id.slice(0, 12)} is gone`);
    const here: ContainerState = { ...c, node: this.node, ip: null, spec: { ...c.spec, node: this.node } };
    return this.fetchAndRestore(here, checkpointId, this.netPlan(here, pod));
  }

  /** A pre-dump of a running container of this node (memory only; it runs on): the parent of its next dump. */
  async preDump(id: string): Promise<void> {
    const c = this.current(id);
    if (!c || c.state !== "running") throw new BerthError(ErrorCode.Conflict, `container ${id.slice(0, 12)} is not running`);
    await this.host.preDump(id, c.startedAt ?? "", { leaveRunning: true, tcpEstablished: false, fileLocks: false });
  }

  /** Nothing of it stays on this host: its process (killed), attachment, mounts and bundle. */
  async discard(id: string): Promise<void> {
    const status = await this.host.status(id).catch(() => null);
    if (status && status !== "stopped") {
      await this.host.signal(id, "SIGKILL", true).catch(() => undefined);
      await this.host.waitExit(id, KILL_GRACE_MS).catch(() => null);
    }
    await this.host.detachNetwork(id).catch(() => undefined);
    await this.host.cleanup(id).catch(() => undefined);
  }

  /**
   * This node's dumped migrations whose target has been down for the grace: their restore is
   * declared failed here, and the compensation (restore here) follows as for a target's report.
   */
  private dumpedHere(): { key: string; toNode: string }[] {
    return [...this.projector.model.containers.values()]
      .filter((c) => c.node === this.node && c.migration?.dumpedAt && !c.migration.restoreFailed)
      .map((c) => ({ key: c.id, toNode: c.migration!.toNode }));
  }

  private takeBack(id: string, reason: string): void {
    const c = this.current(id);
    const m = c?.migration;
    if (!c || !m) return;
    const ctx: Ctx = { node: this.node, actor: `berth/${this.node}`, correlationId: c.pending?.eventId ?? id, causationId: c.pending?.eventId ?? null };
    this.log.warn({ container: id, target: m.toNode }, "the migration's target is down after the dump: restoring it here");
    void this.commands.appendFact(id, (s) => (s?.node === this.node && s.migration?.checkpointId === m.checkpointId && s.migration.dumpedAt && !s.migration.restoreFailed ? [{ type: "ContainerMigrationRestoreFailed", data: { checkpointId: m.checkpointId, node: this.node, reason } }] : []),
      { ...ctx, requestId: factKey(id, "ContainerMigrationRestoreFailed", `${m.checkpointId}@source`) }, "ContainerMigrationRestoreFailed", () => this.stopped)
      .catch((err) => this.log.warn({ container: id, err: toBerthError(err).message }, "could not take the migration back"));
  }

  /** It runs on another node now: nothing of it stays on this host (process, mounts, attachment). */
  private async migratedAway(id: string, checkpointId: string): Promise<void> {
    const c = this.current(id);
    if (!c || c.node === this.node) return;
    fault("migrated-away");
    await this.host.removeCheckpointDir(checkpointId).catch((err) => this.log.warn({ err, container: id }, "could not remove the migrated container's checkpoint dir"));
    await this.host.detachNetwork(id).catch((err) => this.log.warn({ err, container: id }, "could not release the migrated container's attachment"));
    await this.host.cleanup(id).catch((err) => this.log.warn({ err, container: id }, "could not clean up after the migrated container"));
    await this.settleLeavingVolumes();
  }

  /**
   * The volumes migrations from here took (noted at the dump): removed once their container
   * runs on another node (or is gone), kept when the migration ended here; one that another
   * container of this node mounts stays. Kept noted while the migration is under way.
   */
  async settleLeavingVolumes(): Promise<void> {
    const model = this.projector.model;
    const leaving = await this.host.leavingVolumes().catch(() => []);
    if (!leaving.length) return;
    const mountedHere = new Set([...model.containers.values()].filter((x) => x.node === this.node && !leaving.some((l) => l.container === x.id)).flatMap((x) => volumesOf(x.spec)));
    for (const l of leaving) {
      const c = model.byId(l.container);
      if (c && c.node === this.node && c.migration?.checkpointId === l.checkpointId) continue;
      const moved = !c || c.node !== this.node;
      this.log.info({ volume: l.name, container: l.container, moved }, moved ? "removing a volume that moved with its container" : "keeping a volume whose migration ended here");
      await this.host.settleLeavingVolume(l.name, moved && !mountedHere.has(l.name)).catch((err) => this.log.warn({ err, volume: l.name }, "could not settle a volume that left"));
    }
  }

  /**
   * A checkpoint's archive from the object store onto this host (its digest checked), then CRIU
   * restores it under conmon. The unpacked archive is not kept, whatever happens: a retry fetches it again.
   */
  private async fetchAndRestore(c: ContainerState, checkpointId: string, plan: NetPlan, tcpEstablished = false, placeVolumes = false): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }> {
    return this.fetchThenRestore(c, checkpointId, plan, { tcpEstablished, placeVolumes }, async () => {
      const { data, verified } = await this.cp!.archive.get(checkpointId);
      await this.host.unpackCheckpoint(checkpointId, data);
      await verified;
    });
  }

  /**
   * A direct migration's archive, from the source's daemon: tried again while that daemon is
   * away or the stream breaks (a source killed and back serves it again from its local dir), for
   * up to DIRECT_FETCH_MS; then the restore fails and the source restores it itself.
   */
  private async fetchDirectAndRestore(c: ContainerState, fromNode: string, checkpointId: string, plan: NetPlan): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }> {
    const direct = this.cp?.direct;
    if (!direct) throw new BerthError(ErrorCode.Unavailable, "this daemon cannot take archives from other daemons");
    const until = Date.now() + DIRECT_FETCH_MS;
    let tcp = true;
    return this.fetchThenRestore(c, checkpointId, plan, { tcpEstablished: false, placeVolumes: true }, () =>
      pRetry(
        async () => {
          // Every other try without the source's port: a port this node reaches, but not the
          // source through it, must not stop the transfer.
          await direct.fetch(fromNode, checkpointId, tcp);
        },
        {
          retries: 1_000, minTimeout: 250, maxTimeout: 2_000,
          shouldRetry: () => !this.stopped && Date.now() < until,
          onFailedAttempt: ({ error, attemptNumber }) => {
            // A transfer that broke is tried the other way next time: a port this node reaches,
            // but not the source through it, must not stop it. A refusal (not dumped there yet,
            // its daemon away) is not the transport's fault.
            const code = (error as Partial<BerthError>).code;
            if (code !== ErrorCode.NotFound && code !== ErrorCode.Unavailable) tcp = !tcp;
            this.log.warn({ container: c.id, from: fromNode, attempt: attemptNumber, err: error.message, nextTcp: tcp }, "could not take the archive from the source's daemon; trying again");
          },
        },
      ),
    );
  }

  /** `fetch` fills the checkpoint's local dir; then the restore; the dir goes either way. */
  private async fetchThenRestore(c: ContainerState, checkpointId: string, plan: NetPlan, o: { tcpEstablished: boolean; placeVolumes: boolean }, fetch: () => Promise<void>): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }> {
    const t0 = performance.now();
    try {
      await fetch();
      fault("restore-fetched");
      const t1 = performance.now();
      const r = await this.host.prepareAndRestore(c, plan, checkpointId, o);
      this.log.info({ container: c.id, fetchMs: Math.round(t1 - t0), restoreMs: Math.round(performance.now() - t1) }, "fetched and restored");
      return r;
    } finally {
      await this.host.removeCheckpointDir(checkpointId).catch(() => undefined);
    }
  }

  /**
   * A restore from the checkpoint's local dir (a direct migration's compensation). The dir goes
   * once it worked: it is the only copy, and a failed restore is tried again from it.
   */
  private async restoreLocal(c: ContainerState, checkpointId: string, plan: NetPlan): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }> {
    const r = await this.host.prepareAndRestore(c, plan, checkpointId, { tcpEstablished: false });
    await this.host.removeCheckpointDir(checkpointId).catch(() => undefined);
    return r;
  }

  /** How this node's migrations send their archive. */
  private migrationTransfer(): MigrationTransfer {
    return this.cp?.transfer ?? (this.cp?.direct ? "direct" : "store");
  }

  /**
   * The local archive of a direct migration from this node, for its target's daemon (`fromTarget`
   * tells whether the request came from that node). NotFound when this node sends no such one.
   */
  async archiveFor(checkpointId: string, fromTarget: (node: string) => boolean): Promise<ArchiveSource> {
    const find = () => [...this.projector.model.containers.values()].find((x) => x.migration?.checkpointId === checkpointId);
    let c = find();
    if (c?.migration && !c.migration.dumpedAt && c.node === this.node) {
      // The target may have read ContainerMigrationDumped before this daemon's own tail did.
      const w = this.projector.waitFor((e) => e.type === "ContainerMigrationDumped" && e.data.checkpointId === checkpointId, DUMPED_WAIT_MS);
      if (!find()?.migration?.dumpedAt) await w.promise.catch(() => undefined);
      w.cancel();
      c = find();
    }
    const m = c?.migration;
    if (!c || !m || c.node !== this.node || !m.dumpedAt || m.transfer !== "direct" || m.restoreFailed) {
      throw new BerthError(ErrorCode.NotFound, `node ${this.node} sends no archive ${checkpointId}`);
    }
    if (!fromTarget(m.toNode)) throw new BerthError(ErrorCode.InvalidArgument, `archive ${checkpointId} goes to node ${m.toNode} only`);
    return this.host.checkpointSource(checkpointId);
  }

  /**
   * At start, before any saga runs on: local checkpoint dirs whose container is gone or runs on
   * another node now, and that no migration under way uses (a direct migration's source was down
   * when it ended; a daemon killed between a dump and its clean-up).
   */
  async sweepCheckpointDirs(): Promise<void> {
    const inUse = new Set([...this.projector.model.containers.values()].flatMap((c) => (c.migration ? [c.migration.checkpointId] : [])));
    for (const { checkpointId, container } of await this.host.checkpointDirs()) {
      const c = container ? this.projector.model.byId(container) : undefined;
      if (inUse.has(checkpointId) || !container || (c && c.node === this.node)) continue;
      this.log.info({ checkpointId, container }, "removing a checkpoint dir its container no longer needs here");
      await this.host.removeCheckpointDir(checkpointId).catch((err) => this.log.warn({ err, checkpointId }, "could not remove a stale checkpoint dir"));
    }
    await this.settleLeavingVolumes();
    // Volumes a migration put here and a killed daemon did not settle: kept when a container of
    // this node mounts them (it moved here), else removed (the migration ended otherwise).
    const containers = [...this.projector.model.containers.values()];
    const coming = new Set(containers.flatMap((c) => (c.migration?.toNode === this.node && !c.migration.restoreFailed ? [c.migration.checkpointId] : [])));
    const mounted = new Set(containers.filter((c) => c.node === this.node).flatMap((c) => volumesOf(c.spec)));
    for (const { name, checkpointId } of await this.host.volumeMoves()) {
      if (coming.has(checkpointId)) continue;
      this.log.info({ checkpointId, volume: name, kept: mounted.has(name) }, "settling a volume a migration left unsettled here");
      await this.host.settleVolumes(checkpointId, mounted.has(name)).catch((err) => this.log.warn({ err, checkpointId }, "could not settle a migrated volume"));
    }
  }

  private async startLeg(c: ContainerState, ctx: Ctx): Promise<void> {
    const r = await this.host.prepareAndStart(c, this.netPlan(c));
    const data = r.ip ? { pid: r.pid, startedAt: r.startedAt, ip: r.ip } : { pid: r.pid, startedAt: r.startedAt };
    await this.outcome(c.id, { type: "ContainerStarted", data }, ctx, `${intentKey(ctx)}@${r.startedAt}`);
  }

  /** A bridge container keeps its IP: the static one, else the one it had, else the next free. */
  private netPlan(c: ContainerState, podHere?: PodState): NetPlan {
    const model = this.projector.model;
    const pod = c.spec.pod ? (podHere ?? model.pods.get(c.spec.pod)) : undefined;
    if (c.spec.pod && !pod) throw new BerthError(ErrorCode.NotFound, `its pod ${c.spec.pod} is gone`);
    if (!pod && networkMode(c.spec) !== "bridge") return { kind: "plain" };
    // IPs the log gives to the node's other containers and pods (a pod's members share its own).
    const exclude = new Set<string>();
    for (const o of model.containers.values()) {
      if (o.id === c.id || o.node !== this.node || o.removed || (pod && o.spec.pod === pod.id)) continue;
      const ip = o.spec.network?.ip ?? o.ip;
      if (ip) exclude.add(ip);
    }
    for (const p of model.pods.values()) {
      if (p.id === pod?.id || p.node !== this.node) continue;
      const ip = p.spec.network?.ip ?? p.ip;
      if (ip) exclude.add(ip);
    }
    if (pod) {
      const bridge = networkMode(pod.spec) === "bridge" ? { ip: pod.spec.network?.ip ?? pod.ip ?? c.ip, exclude, ports: pod.spec.network?.ports ?? [] } : null;
      return { kind: "pod", pod: pod.id, hostname: pod.name, share: (pod.spec.share ?? DEFAULT_SHARE) as NetPlanShare, bridge, resources: pod.spec.resources };
    }
    return { kind: "bridge", ip: c.spec.network?.ip ?? c.ip, exclude };
  }

  /** Stop signal, wait up to the timeout, then SIGKILL; the exit is recorded here. */
  private async stopLeg(c: ContainerState, signal: string, timeoutSec: number, ctx: Ctx): Promise<void> {
    if (c.state === "paused") {
      // A frozen process cannot act on SIGTERM; thaw it first (as Docker does).
      await this.host.resume(c.id).catch(() => undefined);
    }
    let info = await this.host.readExit(c.id);
    if (!info) {
      await this.host.signal(c.id, signal).catch((err) => this.ignoreIfGone(err));
      info = await this.host.waitExit(c.id, timeoutSec * 1000);
    }
    if (!info) {
      await this.host.signal(c.id, "SIGKILL").catch((err) => this.ignoreIfGone(err));
      info = await this.host.waitExit(c.id, KILL_GRACE_MS);
    }
    if (!info) throw new BerthError(ErrorCode.RuntimeError, "container did not exit after SIGKILL");
    await this.recordExit(c.id, info, ctx);
  }

  private ignoreIfGone(err: unknown): void {
    const msg = (err as Error)?.message ?? "";
    if (!/not running|does not exist|process already finished|no such process/i.test(msg)) throw err;
  }

  /** Record an exit once: only for a running (or being removed) container, with a stable id. */
  async recordExit(id: string, info: ExitInfo, ctx?: Ctx): Promise<void> {
    const c = this.current(id);
    if (!c || c.node !== this.node) return;
    if (c.state !== "running" && c.state !== "paused" && !(c.state === "removing" && c.pid !== null)) return;
    // An exit file older than the current run is a leftover, not this run's exit.
    if (c.startedAt && Date.parse(info.exitedAt) + 1000 < Date.parse(c.startedAt)) return;
    const cause = c.pending;
    const exitCtx: Ctx = ctx ?? {
      node: this.node,
      actor: `berth/${this.node}`,
      correlationId: cause?.eventId ?? id,
      causationId: cause?.eventId ?? null,
    };
    await this.outcome(id, { type: "ContainerExited", data: info }, exitCtx, `exited@${c.startedAt}`);
    const after = this.current(id);
    if (after?.spec.autoRemove && after.state === "exited" && !after.pending) {
      await this.commands.appendDecided(
        id,
        (s) => (s && s.state === "exited" && !s.pending ? [{ type: "ContainerRemoveRequested", data: { force: false } }] : []),
        {
          node: this.node,
          actor: `berth/${this.node}/auto-remove`,
          correlationId: exitCtx.correlationId,
          causationId: null,
          requestId: factKey(id, "autoremove", `${c.startedAt}`),
        },
        `autoremove@${c.startedAt}`,
      );
    } else if (after?.state === "exited" && !after.pending) {
      await this.restarts.consider(id, `exited@${c.startedAt}`);
    }
  }

  /** Append an outcome if the table allows it from the state the log is in now. */
  private async outcome(id: string, ev: NewEvent, ctx: Ctx, key: string): Promise<void> {
    // An outcome that answers an intent comes right after the host action.
    if (ctx.causationId) fault("after-action");
    const stable: Ctx = { ...ctx, requestId: factKey(id, ev.type, key) };
    await this.commands.appendFact(
      id,
      (s) => {
        if (!s || nextState(s.state, ev.type) === null) {
          this.log.warn({ container: id, type: ev.type, state: s?.state }, "outcome not allowed in this state; dropped");
          return [];
        }
        return [ev];
      },
      stable,
      ev.type,
      () => this.stopped,
    );
  }
}

/**
 * The archive's stream, with the fault point `checkpoint-uploading` when armed: once more than the
 * object store's first chunk (128 KiB) went through, the stream stalls long enough for that chunk
 * to be stored, then the daemon dies — an upload cut short, its first chunk in the store.
 */
function probed(data: Readable): Readable {
  if (!armed("checkpoint-uploading")) return data;
  let bytes = 0;
  const dieSoon = () => setTimeout(() => fault("checkpoint-uploading"), 500);
  return data.pipe(new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (bytes > 140 * 1024) return dieSoon();
      bytes += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      if (bytes > 140 * 1024) dieSoon();
      else done();
    },
  }));
}

/** Outcomes of an intent are keyed by it: one intent, one outcome of each type. */
const intentKey = (ctx: Ctx) => ctx.causationId ?? "none";

