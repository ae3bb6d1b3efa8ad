// The pod migration saga (`pod.migrate`, `berth pod migrate POD NODE`): a pod and every member
// moved to another node with their memory. It is built of sagas that exist already, on the
// pod's subject:
//   source: PodMigrationRequested → the pod checkpoint saga (freeze all, dump each, stop them)
//           → PodMigrationDumped;
//   target: every member restored into a sandbox of its own (a new IP in its subnet), each one's
//           ContainerMigrated (the member is the target's from then on) → PodMigrated;
//   target fails: what it restored goes, PodMigrationRestoreFailed → the source restores the pod
//           from the same checkpoint → PodMigrationFailed (compensated).
// Each step's event has a stable id and is appended only when the state allows it, and the next
// step is read from the log (podMigrationNext), so either daemon killed at any step carries the
// saga on when it is back (resume()).
import { randomUUID } from "node:crypto";
import { BerthError, ErrorCode, conflict, invalid, notFound, toBerthError, unavailable } from "../shared/errors.js";
import { failAt, fault } from "../fault.js";
import { logger } from "../log.js";
import type { Meta, StoredEvent } from "../events/types.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { PodCommands, PodMigrationSaga, PodState } from "../aggregates/pod/index.js";
import { ctxFromMeta, factKey, type Ctx, type RequestJournal } from "./command-service.js";
import { idFromRequest } from "./container-service.js";
import type { PodCheckpoints } from "./pod-checkpoint.js";
import type { Executor } from "./executor.js";
import type { PodHost } from "./ports.js";
import { watchTargets } from "./migration-watch.js";

type Opts = { meta?: Meta; timeoutMs?: number; request?: RequestJournal };

const MIGRATION_TIMEOUT_MS = 15 * 60_000;
const MEMBERS_WAIT_MS = 60_000;
/** A step that failed for a passing reason (the log, a peer) is tried again after this. */
const RETRY_MS = 2_000;

export interface PodMigrationDeps {
  node: string;
  projector: Projector;
  pods: PodCommands;
  /** The members' ContainerMigrated. */
  containers: ContainerCommands;
  checkpoints: PodCheckpoints;
  executor: Pick<Executor, "restoreMigratingMember" | "discard" | "preDump">;
  host: PodHost;
  members(podId: string): ContainerState[];
  /** Whether a node's daemon answers (its heartbeat). */
  nodeUp?(node: string): boolean;
  /** The pod's events (a retried request that has ended answers from them). */
  history(podId: string): Promise<StoredEvent[]>;
}

/** The next step of a pod migration, for the node asking, from the pod and its checkpoint. */
export type PodMigrationStep =
  /** Source: the pod checkpoint (its saga, or its resumption). */
  | { kind: "checkpoint" }
  /** Source: the checkpoint is made and its members stopped: PodMigrationDumped. */
  | { kind: "dumped" }
  /** Target: restore the members, then record the pod as its own. */
  | { kind: "restore" }
  /** Target: the pod is its own; record each member that is not yet. */
  | { kind: "members" }
  /** Source: the target failed: restore here from the same checkpoint. */
  | { kind: "compensate" }
  /** Source: the pod checkpoint failed (its members run on, thawed): the migration ends there. */
  | { kind: "fail"; reason: string }
  /** Nothing for this node to do now. */
  | { kind: "none" };

/** Pure: what `node` does next for a pod migration (`memberNode`: a member's owner in the log). */
export function podMigrationNext(pod: PodState, node: string, checkpointed: (checkpointId: string) => boolean, memberNode: (id: string) => string | undefined = () => undefined): PodMigrationStep {
  const m = pod.migration;
  if (!m) {
    const f = pod.migratedFrom;
    return f && pod.node === node && f.containers.some((id) => memberNode(id) === f.fromNode) ? { kind: "members" } : { kind: "none" };
  }
  if (m.toNode === node) return m.dumpedAt && !m.restoreFailed ? { kind: "restore" } : { kind: "none" };
  if (pod.node !== node) return { kind: "none" };
  if (m.restoreFailed) return { kind: "compensate" };
  if (m.dumpedAt) return { kind: "none" };
  if (pod.checkpointFailed?.checkpointId === m.checkpointId) return { kind: "fail", reason: pod.checkpointFailed.reason };
  if (pod.checkpointed === m.checkpointId && checkpointed(m.checkpointId)) return { kind: "dumped" };
  return { kind: "checkpoint" };
}

export class PodMigrations {
  private readonly running = new Map<string, Promise<void>>();
  private readonly log = logger("pod-migrate");
  private stopped = false;

  constructor(private readonly d: PodMigrationDeps) {}

  private get model() {
    return this.d.projector.model;
  }

  /** Checks, the intent, then the source's part; resolves with the outcome (or throws the failure). */
  async migrate(pod: PodState, targetNode: string, preCopy: boolean, o: Opts = {}) {
    const ctx = ctxFromMeta(this.d.node, o.meta, "anonymous");
    ctx.requestId ??= randomUUID();
    const checkpointId = idFromRequest("podmigration", ctx.requestId);
    const ended = (e: StoredEvent) => e.subject === `berth.ev.pod.${pod.id}` && (e.type === "PodMigrated" || e.type === "PodMigrationFailed") && e.data.checkpointId === checkpointId;
    const waiter = this.d.projector.waitFor(ended, Math.max(o.timeoutMs ?? 0, MIGRATION_TIMEOUT_MS));
    try {
      let outcome = o.request?.retry ? (await this.d.history(pod.id)).find(ended) : undefined;
      if (!outcome) {
        if (pod.migration?.checkpointId !== checkpointId) {
          this.check(pod, targetNode);
          await this.d.pods.handle(pod.id, { type: "Migrate", checkpointId, toNode: targetNode, preCopy }, ctx);
        }
        this.kick(pod.id);
        outcome = await waiter.promise;
      }
      if (outcome.type === "PodMigrationFailed") {
        const d = outcome.data;
        throw new BerthError(ErrorCode.RuntimeError, d.compensated ? `migration failed, the pod runs on ${d.node} again (restored from the same checkpoint): ${d.reason}` : `migration failed, the pod stays on ${d.node}: ${d.reason}`);
      }
      if (outcome.type !== "PodMigrated") throw new BerthError(ErrorCode.Internal, `unexpected outcome ${outcome.type}`);
      // The members' own records follow the pod's: the answer waits for them too.
      const { toNode, containers } = outcome.data;
      const end = Date.now() + MEMBERS_WAIT_MS;
      while (containers.some((c) => this.model.byId(c) && this.model.byId(c)!.node !== toNode)) {
        if (Date.now() > end) throw new BerthError(ErrorCode.Timeout, `pod ${pod.name} is on ${toNode}, but not every member's move was seen within ${MEMBERS_WAIT_MS} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return { id: pod.id, name: pod.name, node: outcome.data.toNode, downtimeMs: outcome.data.downtimeMs, containers: outcome.data.containers };
    } finally {
      waiter.cancel();
    }
  }

  /** What is refused before anything is appended: the node, the members, their images and volumes. */
  private check(pod: PodState, to: string): void {
    if (!this.model.nodes.has(to)) throw invalid(`unknown node '${to}': no daemon of that name ever joined (berth node ls)`);
    if (to === pod.node) throw conflict(`pod ${pod.name} is on node ${to} already`);
    if (this.d.nodeUp && !this.d.nodeUp(to)) throw unavailable(`node ${to} is down: its daemon does not answer`);
    if (pod.checkpoint) throw conflict(`a checkpoint of pod ${pod.name} is under way`);
    const members = this.d.members(pod.id);
    if (!members.length) throw conflict(`pod ${pod.name} has no containers to move`);
    for (const m of members) {
      if (m.pending) throw conflict(`member ${m.name} is busy (${m.pending.type.replace(/^Container|Requested$/g, "").toLowerCase()} under way)`);
      if (m.state !== "running") throw conflict(`member ${m.name} is ${m.state}: a pod migrates when every member runs (start the pod first)`);
      if (m.spec.mounts?.some((x) => x.type === "volume")) throw conflict(`member ${m.name} has volumes, which stay on their node: a pod's volumes do not move yet (a container's do)`);
      if (!this.model.image(to, m.imageDigest)) throw notFound(`the image ${m.image} of member ${m.name} is not on node ${to}: import it there first`);
    }
  }

  /** Sagas a killed daemon left under way, on either side: carried on (in the background). */
  resume(): void {
    for (const p of this.model.pods.values()) if ((p.migration || p.migratedFrom) && !p.removed) this.kick(p.id);
  }

  /** The log moved a migration on: the next step may be this node's. */
  start(): void {
    this.stopWatch = watchTargets(this.d.nodeUp, () => this.dumpedHere(), (id, reason) => this.takeBack(id, reason));
    this.d.projector.onEvent((e) => {
      if (!e.subject.startsWith("berth.ev.pod.")) return;
      const id = e.subject.slice("berth.ev.pod.".length);
      if (e.type === "PodMigrationDumped" || e.type === "PodMigrationRestoreFailed" || e.type === "PodMigrated") this.kick(id);
      if (e.type === "PodMigrated" && e.data.fromNode === this.d.node) {
        // Its members' own host state goes with their ContainerMigrated (the executor); the sandbox here.
        this.d.host.removePod(id).catch((err) => this.log.warn({ pod: id, err }, "could not release the migrated pod's sandbox"));
      }
    });
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
  }

  private stopWatch: (() => void) | null = null;

  /** This node's dumped pod migrations whose target has been down for the grace: taken back (migration-watch.ts). */
  private dumpedHere(): { key: string; toNode: string }[] {
    return [...this.model.pods.values()]
      .filter((p) => p.node === this.d.node && p.migration?.fromNode === this.d.node && p.migration.dumpedAt && !p.migration.restoreFailed)
      .map((p) => ({ key: p.id, toNode: p.migration!.toNode }));
  }

  private takeBack(id: string, reason: string): void {
    const m = this.model.pods.get(id)?.migration;
    if (!m) return;
    this.log.warn({ pod: id, target: m.toNode }, "the pod migration's target is down after the dump: restoring it here");
    const ctx: Ctx = { node: this.d.node, actor: `berth/${this.d.node}`, correlationId: m.eventId, causationId: m.eventId };
    void this.d.pods.appendFact(id, (s) => (s?.node === this.d.node && s.migration?.checkpointId === m.checkpointId && s.migration.dumpedAt && !s.migration.restoreFailed ? [{ type: "PodMigrationRestoreFailed", data: { checkpointId: m.checkpointId, node: this.d.node, reason } }] : []),
      { ...ctx, requestId: factKey(id, "PodMigrationRestoreFailed", `${m.checkpointId}@source`) }, "PodMigrationRestoreFailed", () => this.stopped)
      .catch((err) => this.log.warn({ pod: id, err: toBerthError(err).message }, "could not take the pod migration back"));
  }

  /** One run per pod at a time; a run carries the saga as far as this node's part goes. */
  private kick(podId: string): void {
    if (this.stopped || this.running.has(podId)) return;
    const p = this.carry(podId)
      .catch((err) => {
        // The log or a peer out of reach (or a step that failed for a passing reason): again in a while.
        this.log.warn({ pod: podId, err: toBerthError(err).message }, "pod migration step failed; retrying");
        setTimeout(() => this.kick(podId), RETRY_MS).unref();
      })
      .finally(() => this.running.delete(podId));
    this.running.set(podId, p);
  }

  private async carry(podId: string): Promise<void> {
    for (;;) {
      const pod = this.model.pods.get(podId);
      if (!pod || pod.removed || this.stopped) return;
      const step = podMigrationNext(pod, this.d.node, (id) => this.model.checkpoints.has(id), (id) => this.model.byId(id)?.node);
      if (step.kind === "none") return;
      if (step.kind === "members") {
        const f = pod.migratedFrom!;
        const ctx: Ctx = { node: this.d.node, actor: `berth/${this.d.node}`, correlationId: f.eventId, causationId: f.eventId };
        await this.recordMembers(pod, ctx);
        return;
      }
      const m = pod.migration!;
      const ctx: Ctx = { node: this.d.node, actor: `berth/${this.d.node}`, correlationId: m.eventId, causationId: m.eventId };
      switch (step.kind) {
        case "checkpoint":
          try {
            // Pre-copy: each member's memory while it runs; the pod checkpoint's dumps are then incremental.
            if (m.preCopy && !pod.checkpoint) for (const c of this.d.members(pod.id)) await this.d.executor.preDump(c.id);
            await this.d.checkpoints.checkpoint(pod, { leaveRunning: false }, { meta: { actor: ctx.actor, correlationId: m.eventId } }, m.checkpointId);
          } catch (err) {
            const e = toBerthError(err);
            const now = this.model.pods.get(podId);
            // The saga's own failure is in the log (PodCheckpointFailed): the next pass reads it.
            if (now?.checkpointFailed?.checkpointId === m.checkpointId || e.code === ErrorCode.Unavailable || this.stopped) throw e;
            // Refused before it began (a member busy, gone, stopped): nothing was frozen.
            if (now?.checkpoint?.checkpointId !== m.checkpointId && !this.model.checkpoints.has(m.checkpointId)) {
              await this.fact(pod, "PodMigrationFailed", { checkpointId: m.checkpointId, node: this.d.node, reason: `checkpoint: ${e.message}`, compensated: false }, ctx, () => true);
              continue;
            }
            throw e;
          }
          break;
        case "dumped": {
          const rec = this.model.podCheckpoint(m.checkpointId)!;
          // When its members were frozen: the record's time less the freeze it reports.
          const dumpedAt = new Date().toISOString();
          const frozenAt = new Date(Date.parse(rec.createdAt) - rec.frozenMs).toISOString();
          fault("migrate-dumped");
          await this.fact(pod, "PodMigrationDumped", { checkpointId: m.checkpointId, dumpedAt, frozenAt }, ctx, (s) => !s.migration!.dumpedAt);
          break;
        }
        case "restore":
          await this.restoreHere(pod, m, ctx);
          break;
        case "compensate": {
          let reason = m.restoreFailed!;
          let compensated = true;
          try {
            await this.d.checkpoints.restore({ checkpointId: m.checkpointId }, {
              meta: { actor: ctx.actor, correlationId: m.eventId, requestId: `${m.checkpointId}:compensate` },
              request: { retry: true, id: pod.id, noteId: async () => undefined },
            });
          } catch (err) {
            const e = toBerthError(err);
            if (e.code === ErrorCode.Unavailable || this.stopped) throw e;
            // Its checkpoint stays: `pod restore` can try again.
            reason = `${reason}; restoring it here from checkpoint ${m.checkpointId.slice(0, 12)} failed too: ${e.message}`;
            compensated = false;
          }
          fault("migrate-compensated");
          await this.fact(pod, "PodMigrationFailed", { checkpointId: m.checkpointId, node: this.d.node, reason, compensated }, ctx, () => true);
          break;
        }
        case "fail":
          await this.fact(pod, "PodMigrationFailed", { checkpointId: m.checkpointId, node: this.d.node, reason: step.reason, compensated: false }, ctx, () => true);
          break;
      }
    }
  }

  /**
   * The target's part: the pod checkpoint's archives onto this host and each member restored
   * into the pod's sandbox here, then PodMigrated (the pod is this node's: appended with the
   * pod's expected version, so it and a source's PodMigrationRestoreFailed cannot both be
   * stored), then each member's ContainerMigrated. A failure of a restore takes away what was
   * restored and tells the source.
   */
  private async restoreHere(pod: PodState, m: PodMigrationSaga, ctx: Ctx): Promise<void> {
    const rec = this.model.podCheckpoint(m.checkpointId);
    if (!rec) throw notFound(`pod checkpoint ${m.checkpointId} is gone`);
    const here = this.podHere(pod);
    let last = Date.parse(m.dumpedAt!);
    try {
      failAt("migrate-restore");
      for (const mem of rec.members) {
        const c = this.model.byId(mem.container);
        if (!c) throw notFound(`member ${mem.name} is gone`);
        const r = await this.d.executor.restoreMigratingMember(c.id, mem.checkpointId, here);
        if (r.ip) here.ip = r.ip;
        last = Math.max(last, Date.parse(r.startedAt));
      }
    } catch (err) {
      const reason = toBerthError(err).message;
      this.log.warn({ pod: pod.id, from: m.fromNode, reason }, "could not restore the migrating pod here; its source restores it");
      await this.giveBack(pod.id, rec.members.map((x) => x.container));
      await this.fact(pod, "PodMigrationRestoreFailed", { checkpointId: m.checkpointId, node: this.d.node, reason }, ctx, (s) => !s.migration!.restoreFailed);
      return;
    }
    fault("migrate-restored");
    const downtimeMs = Math.max(0, last - Date.parse(m.frozenAt ?? m.dumpedAt!));
    const ip = here.ip ?? undefined;
    await this.fact(pod, "PodMigrated", { checkpointId: m.checkpointId, fromNode: m.fromNode, toNode: this.d.node, downtimeMs, containers: rec.members.map((x) => x.container), ...(ip ? { ip } : {}) }, ctx, (s) => !!s.migration!.dumpedAt && !s.migration!.restoreFailed);
    if (this.model.pods.get(pod.id)?.node !== this.d.node) {
      // The source took it back meanwhile (its target watch): it must not run here too.
      this.log.warn({ pod: pod.id }, "restored here, but the migration ended otherwise: removing it from this host");
      await this.giveBack(pod.id, rec.members.map((x) => x.container));
      return;
    }
    this.log.info({ pod: pod.id, from: m.fromNode, downtimeMs }, "pod migrated here");
  }

  /**
   * After PodMigrated: each member not yet recorded as this node's gets its ContainerMigrated
   * (its process, restored before the pod's record, is found live: a resumed run reads it back).
   */
  private async recordMembers(pod: PodState, ctx: Ctx): Promise<void> {
    const f = pod.migratedFrom!;
    const rec = this.model.podCheckpoint(f.checkpointId);
    if (!rec) throw notFound(`pod checkpoint ${f.checkpointId} is gone`);
    const here = this.podHere(pod);
    here.ip = pod.ip;
    const done = (await this.d.history(pod.id)).find((e) => e.type === "PodMigrated" && e.data.checkpointId === f.checkpointId);
    const downtimeMs = done?.type === "PodMigrated" ? done.data.downtimeMs : 0;
    for (const mem of rec.members) {
      const c = this.model.byId(mem.container);
      if (!c || c.node !== f.fromNode) continue;
      const r = await this.d.executor.restoreMigratingMember(c.id, mem.checkpointId, here);
      const data = { checkpointId: mem.checkpointId, fromNode: f.fromNode, toNode: this.d.node, downtimeMs, pid: r.pid, startedAt: r.startedAt, pod: pod.id, ...((r.ip ?? pod.ip) ? { ip: r.ip ?? pod.ip! } : {}), ...(r.lazyPages ? { lazyPages: true } : {}) };
      await this.d.containers.appendFact(c.id, (s) => (s && s.node === f.fromNode && s.state === "exited" ? [{ type: "ContainerMigrated", data }] : []),
        { ...ctx, requestId: factKey(c.id, "ContainerMigrated", mem.checkpointId) }, "ContainerMigrated", () => this.stopped);
    }
  }

  /** The pod as it is here: its old IP is the source's subnet's. */
  private podHere(pod: PodState): PodState {
    return { ...pod, node: this.d.node, ip: null, spec: { ...pod.spec, node: this.d.node, ...(pod.spec.network ? { network: { ...pod.spec.network, ip: undefined } } : {}) } };
  }

  /** Nothing of the pod stays on this host: its members' processes and bundles, its sandbox. */
  private async giveBack(podId: string, members: string[]): Promise<void> {
    for (const id of members) await this.d.executor.discard(id);
    await this.d.host.removePod(podId).catch(() => undefined);
  }

  /** A fact of the migration under way, appended once (stable id) and only while `ok` holds. */
  private async fact(pod: PodState, type: "PodMigrationDumped" | "PodMigrationRestoreFailed" | "PodMigrated" | "PodMigrationFailed", data: Record<string, unknown>, ctx: Ctx, ok: (s: PodState) => boolean): Promise<void> {
    const checkpointId = String(data.checkpointId);
    await this.d.pods.appendFact(pod.id, (s) => (s?.migration?.checkpointId === checkpointId && ok(s) ? [{ type, data } as never] : []),
      { ...ctx, requestId: factKey(pod.id, type, checkpointId) }, type, () => this.stopped);
  }
}
