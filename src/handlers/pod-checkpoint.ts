// The pod checkpoint saga and the pod restore (`pod.checkpoint`, `pod.restore`). A pod's members
// are frozen first (no member runs while another is dumped), then each is dumped with CRIU while
// frozen (a container checkpoint with leaveRunning, so a failure leaves it as it was), then the
// pod checkpoint's record lists their checkpoints, and the members are stopped (SIGKILL while
// frozen: nothing runs after its dump) or thawed. Every step is a container command of its own
// whose request id derives from the pod checkpoint's id, and `next` reads what is left to do
// from the log; so a daemon killed at any step finishes the saga when it comes back (resume()),
// or, when a member cannot be dumped, puts back what it froze and drops what it dumped.
import { randomBytes } from "node:crypto";
import { BerthError, ErrorCode, alreadyExists, conflict, invalid, notFound, toBerthError } from "../shared/errors.js";
import { logger } from "../log.js";
import { fault } from "../fault.js";
import type { Meta, PodCheckpointCreatedData, PodCheckpointOptions } from "../events/types.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { PodCommands, PodCheckpointSaga, PodState } from "../aggregates/pod/index.js";
import { retirePod, type PodCheckpointState } from "../aggregates/checkpoint/index.js";
import type { PodSpec } from "../shared/spec.js";
import { ctxFromMeta, factKey, type Ctx, type RequestJournal } from "./command-service.js";
import { idFromRequest, type ContainerService } from "./container-service.js";
import type { CheckpointService } from "./checkpoint-service.js";
import { holders } from "./network-checks.js";

type Opts = { meta?: Meta; timeoutMs?: number; request?: RequestJournal };

/** A member's CRIU dump (or restore) may take CRIU's whole deadline. */
const MEMBER_TIMEOUT_MS = 300_000;

export interface PodCheckpointDeps {
  node: string;
  projector: Projector;
  pods: PodCommands;
  containers: ContainerService;
  checkpoints: CheckpointService;
  /** A new pod (a restore into a pod that is gone, or under a new name). */
  createPod(spec: PodSpec, o: Opts): Promise<{ id: string; name: string }>;
  /** A pod's members in the order they were created. */
  members(podId: string): ContainerState[];
  keep?: number;
}

/** What a member's checkpoint is called in a pod checkpoint: derived, so a retried step finds it. */
export const memberCheckpointId = (checkpointId: string, member: string) => idFromRequest("checkpoint", `${checkpointId}:dump:${member}`);

/** The next step of a pod checkpoint saga, from what the log says of its members. */
export type PodCheckpointStep =
  | { kind: "wait"; member: string }
  | { kind: "freeze"; member: string }
  | { kind: "dump"; member: string }
  | { kind: "record" }
  | { kind: "end"; member: string }
  | { kind: "thaw"; member: string }
  | { kind: "done" }
  | { kind: "fail"; reason: string };

/**
 * Pure: what the saga does next. Members are taken in order; a member with an intent pending is
 * waited for (its own saga first); a member that stopped before it was dumped fails the saga.
 */
export function podCheckpointNext(saga: PodCheckpointSaga, member: (id: string) => ContainerState | undefined, recorded: (checkpointId: string) => boolean): PodCheckpointStep {
  const ms = saga.members.map((id) => ({ id, c: member(id) }));
  for (const { id, c } of ms) if (c?.pending) return { kind: "wait", member: id };
  if (!recorded(saga.checkpointId)) {
    for (const { id, c } of ms) {
      const dumped = recorded(memberCheckpointId(saga.checkpointId, id));
      if (!c) return { kind: "fail", reason: `member ${id.slice(0, 12)} was removed during the checkpoint` };
      if (c.state === "running" && !dumped) return { kind: "freeze", member: id };
      if (c.state !== "paused") return { kind: "fail", reason: `member ${c.name} is ${c.state}: it stopped during the checkpoint` };
    }
    for (const { id } of ms) if (!recorded(memberCheckpointId(saga.checkpointId, id))) return { kind: "dump", member: id };
    return { kind: "record" };
  }
  for (const { id, c } of ms) {
    if (c?.state !== "paused") continue;
    if (!saga.leaveRunning) return { kind: "end", member: id };
    if (!saga.pausedBefore.includes(id)) return { kind: "thaw", member: id };
  }
  return { kind: "done" };
}

export class PodCheckpoints {
  private readonly running = new Map<string, Promise<PodCheckpointState>>();
  private readonly log = logger("pod-checkpoint");
  private stopped = false;

  constructor(private readonly d: PodCheckpointDeps) {}

  private get model() {
    return this.d.projector.model;
  }

  /** `checkpointId`: the one a pod migration names (else it derives from the request). */
  async checkpoint(pod: PodState, opts: Partial<PodCheckpointOptions>, o: Opts = {}, given?: string) {
    const ctx = ctxFromMeta(this.d.node, o.meta, "anonymous");
    const checkpointId = given ?? (ctx.requestId ? idFromRequest("podcheckpoint", ctx.requestId) : randomBytes(32).toString("hex"));
    ctx.requestId ??= checkpointId;
    const t0 = performance.now();
    if (!this.model.podCheckpoint(checkpointId) && pod.checkpoint?.checkpointId !== checkpointId) {
      if (pod.checkpointFailed?.checkpointId === checkpointId) throw new BerthError(ErrorCode.RuntimeError, pod.checkpointFailed.reason);
      const members = this.d.members(pod.id).filter((m) => m.state === "running" || m.state === "paused");
      const busy = members.find((m) => m.pending);
      if (busy) throw conflict(`member ${busy.name} is busy (${busy.pending!.type.replace(/^Container|Requested$/g, "").toLowerCase()} under way)`);
      const options = { leaveRunning: opts.leaveRunning ?? false, tcpEstablished: opts.tcpEstablished ?? false, fileLocks: opts.fileLocks ?? false };
      const pausedBefore = members.filter((m) => m.state === "paused").map((m) => m.id);
      await this.d.pods.handle(pod.id, { type: "Checkpoint", checkpointId, options, members: members.map((m) => m.id), pausedBefore }, ctx);
    }
    const rec = await this.run(pod.id, checkpointId);
    return {
      id: pod.id, checkpointId, sizeBytes: rec.sizeBytes, durationMs: rec.durationMs || Math.round(performance.now() - t0), frozenMs: rec.frozenMs,
      members: rec.members,
    };
  }

  /** Sagas a killed daemon left under way on this node's pods: carried on (in the background). */
  resume(): void {
    for (const p of this.model.pods.values()) {
      if (p.node !== this.d.node || !p.checkpoint) continue;
      this.run(p.id, p.checkpoint.checkpointId).catch((err) => this.log.warn({ pod: p.id, err: toBerthError(err).message }, "resumed pod checkpoint ended in failure"));
    }
  }

  stop(): void {
    this.stopped = true;
  }

  /** One run of a saga at a time (a retried request joins the one under way). */
  private run(podId: string, checkpointId: string): Promise<PodCheckpointState> {
    let p = this.running.get(checkpointId);
    if (!p) {
      p = this.carry(podId, checkpointId).finally(() => this.running.delete(checkpointId));
      this.running.set(checkpointId, p);
    }
    return p;
  }

  private async carry(podId: string, checkpointId: string): Promise<PodCheckpointState> {
    const t0 = performance.now();
    let frozenAt: number | null = null;
    let frozenMs = 0;
    for (;;) {
      const pod = this.model.pods.get(podId);
      const saga = pod?.checkpoint;
      if (!saga || saga.checkpointId !== checkpointId) {
        const rec = this.model.podCheckpoint(checkpointId);
        if (rec) return rec;
        throw new BerthError(ErrorCode.RuntimeError, pod?.checkpointFailed?.checkpointId === checkpointId ? pod.checkpointFailed.reason : `pod checkpoint ${checkpointId} did not complete`);
      }
      if (this.stopped) throw new BerthError(ErrorCode.Unavailable, "the daemon is stopping; the pod checkpoint goes on when it is back");
      const ctx: Ctx = { node: this.d.node, actor: `berth/${this.d.node}`, correlationId: saga.eventId, causationId: saga.eventId };
      const step = podCheckpointNext(saga, (id) => this.model.byId(id), (id) => this.model.checkpoints.has(id));
      const mo = (what: string, member: string): Opts => ({
        timeoutMs: MEMBER_TIMEOUT_MS,
        meta: { actor: ctx.actor, correlationId: saga.eventId, requestId: `${checkpointId}:${what}:${member}` },
        // Each step is a request of its own: a repeat (after a crash) answers from the log.
        request: { retry: true, id: member, noteId: async () => undefined },
      });
      try {
        switch (step.kind) {
          case "wait":
            await this.settled(step.member);
            break;
          case "freeze":
            frozenAt ??= performance.now();
            await this.d.containers.pause(step.member, mo("freeze", step.member));
            break;
          case "dump":
            if (frozenAt !== null && !this.model.checkpoints.has(memberCheckpointId(checkpointId, saga.members[0]))) fault("pod-checkpoint-frozen");
            frozenAt ??= performance.now();
            await this.d.containers.checkpoint(step.member, { leaveRunning: true, tcpEstablished: saga.tcpEstablished, fileLocks: saga.fileLocks, partOf: checkpointId }, mo("dump", step.member));
            break;
          case "record": {
            if (frozenAt !== null) frozenMs = Math.round(performance.now() - frozenAt);
            fault("pod-checkpoint-dumped");
            await this.d.checkpoints.recordPod(this.recordOf(pod!, saga, Math.round(performance.now() - t0), frozenMs), ctx, () => this.stopped);
            fault("pod-checkpoint-recorded");
            break;
          }
          case "end":
            await this.d.containers.kill(step.member, "SIGKILL", mo("end", step.member));
            break;
          case "thaw":
            await this.d.containers.unpause(step.member, mo("thaw", step.member));
            break;
          case "done": {
            if (saga.leaveRunning && frozenAt !== null) frozenMs = Math.round(performance.now() - frozenAt);
            await this.d.pods.appendFact(podId, (s) => (s?.checkpoint?.checkpointId === checkpointId ? [{ type: "PodCheckpointed", data: { checkpointId, leaveRunning: saga.leaveRunning } }] : []),
              { ...ctx, requestId: factKey(podId, "PodCheckpointed", checkpointId) }, "PodCheckpointed", () => this.stopped);
            await this.retire(pod!, ctx);
            const rec = this.model.podCheckpoint(checkpointId)!;
            return { ...rec, frozenMs: frozenMs || rec.frozenMs };
          }
          case "fail":
            await this.compensate(podId, saga, step.reason, ctx);
            break;
        }
      } catch (err) {
        const e = toBerthError(err);
        if (e.code === ErrorCode.Unavailable || this.stopped) throw e;
        // Once recorded, the checkpoint stands: stopping or thawing a member is retried, not undone.
        if (this.model.checkpoints.has(checkpointId)) {
          this.log.warn({ pod: podId, step: step.kind, err: e.message }, "pod checkpoint: a member's last step failed; retrying");
          await new Promise((r) => setTimeout(r, 500));
          continue;
        }
        const who = "member" in step ? this.model.byId(step.member)?.name ?? step.member.slice(0, 12) : "";
        await this.compensate(podId, saga, `${step.kind} ${who}: ${e.message}`, ctx);
      }
    }
  }

  /** Members the saga froze are thawed, the members' checkpoints it made are dropped, then PodCheckpointFailed. */
  private async compensate(podId: string, saga: PodCheckpointSaga, reason: string, ctx: Ctx): Promise<void> {
    this.log.warn({ pod: podId, checkpointId: saga.checkpointId, reason }, "pod checkpoint failed; thawing its members");
    for (const m of saga.members) {
      const c = await this.settled(m);
      if (c?.state === "paused" && !saga.pausedBefore.includes(m)) {
        await this.d.containers.unpause(m, {
          meta: { actor: ctx.actor, correlationId: saga.eventId, requestId: `${saga.checkpointId}:thaw:${m}` },
          request: { retry: true, id: m, noteId: async () => undefined },
        });
      }
    }
    for (const m of saga.members) {
      const mcp = memberCheckpointId(saga.checkpointId, m);
      if (this.model.checkpoints.has(mcp)) await this.d.checkpoints.drop(mcp, "its pod checkpoint failed", ctx);
    }
    await this.d.pods.appendFact(podId, (s) => (s?.checkpoint?.checkpointId === saga.checkpointId ? [{ type: "PodCheckpointFailed", data: { checkpointId: saga.checkpointId, reason } }] : []),
      { ...ctx, requestId: factKey(podId, "PodCheckpointFailed", saga.checkpointId) }, "PodCheckpointFailed", () => this.stopped);
  }

  private recordOf(pod: PodState, saga: PodCheckpointSaga, durationMs: number, frozenMs: number): PodCheckpointCreatedData {
    const members = saga.members.map((id) => {
      const cp = this.model.containerCheckpoint(memberCheckpointId(saga.checkpointId, id))!;
      return { container: id, name: cp.containerName, checkpointId: cp.id, sizeBytes: cp.sizeBytes, frozenMs: cp.frozenMs };
    });
    // PodStarted (pod start) records the pod's IP; members started one by one carry it on their own.
    const ip = pod.spec.network?.ip ?? pod.ip ?? saga.members.map((id) => this.model.byId(id)?.ip).find((x) => x);
    return {
      checkpointId: saga.checkpointId, pod: pod.id, podName: pod.name, node: pod.node, podSpec: pod.spec, ...(ip ? { ip } : {}),
      members: members.map(({ container, name, checkpointId }) => ({ container, name, checkpointId })),
      sizeBytes: members.reduce((n, m) => n + m.sizeBytes, 0), durationMs,
      // A resumed saga does not know when its members were frozen: then the longest member's own.
      frozenMs: frozenMs || Math.max(...members.map((m) => m.frozenMs)),
      leaveRunning: saga.leaveRunning, tcpEstablished: saga.tcpEstablished,
    };
  }

  /** The retention rule for a pod's checkpoints: its newest few are kept. */
  private async retire(pod: PodState, ctx: Ctx): Promise<void> {
    for (const old of retirePod([...this.model.checkpoints.values()], pod.id, this.d.keep)) {
      await this.d.checkpoints.drop(old, "retention", ctx).catch((err) => this.log.warn({ pod: pod.id, checkpointId: old, err }, "could not retire a pod checkpoint"));
    }
  }

  /** The member once no intent of its own is pending (or gone). */
  private async settled(id: string, timeoutMs = MEMBER_TIMEOUT_MS): Promise<ContainerState | undefined> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const c = this.model.byId(id);
      if (!c?.pending) return c;
      if (Date.now() > end) throw conflict(`member ${c.name} is still busy (${c.pending.type})`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * A pod checkpoint's members back: into the pod and its containers when they are there and
   * not running, else (the pod is gone, or `name` is given) into a new pod with new members
   * (named `<pod>-<member>` under a new name). The pod's IP comes back with it where it can.
   */
  async restore(req: { checkpointId: string; name?: string }, o: Opts = {}) {
    const rec = this.model.podCheckpoint(req.checkpointId);
    if (!rec) {
      if (this.model.containerCheckpoint(req.checkpointId)) throw invalid(`checkpoint ${req.checkpointId} is a container's: restore it with restore`);
      throw notFound(`no pod checkpoint '${req.checkpointId}'`);
    }
    const ctx = ctxFromMeta(this.d.node, o.meta, "anonymous");
    ctx.requestId ??= randomBytes(16).toString("hex");
    const t0 = performance.now();
    const mo = (what: string, member: string): Opts => ({
      timeoutMs: Math.max(o.timeoutMs ?? 0, MEMBER_TIMEOUT_MS),
      meta: { actor: ctx.actor, correlationId: ctx.correlationId, requestId: `${ctx.requestId}:${what}:${member}` },
    });
    const existing = this.model.pods.get(rec.pod);
    let podId: string;
    const restored: string[] = [];
    if (req.name === undefined && existing) {
      if (existing.node !== this.d.node) throw conflict(`pod ${existing.name} is on node ${existing.node}: send the command to its daemon`);
      if (existing.checkpoint) throw conflict(`a checkpoint of pod ${existing.name} is under way`);
      podId = existing.id;
      const members = rec.members.map((m) => ({ m, c: this.model.byId(m.container) }));
      const gone = members.find((x) => !x.c);
      if (gone) throw notFound(`member ${gone.m.name} of pod ${existing.name} is gone: restore the pod under a new name (--name)`);
      // A member that runs is one the restore would overwrite (a retried request's own restored ones aside).
      const live = members.find((x) => x.c!.state === "running" || x.c!.state === "paused");
      if (live && !o.request?.retry) {
        throw conflict(`member ${live.m.name} of pod ${existing.name} is ${live.c!.state}: stop the pod first, or restore it under a new name (--name)`);
      }
      for (const { m, c } of members) {
        if (c!.state === "running" || c!.state === "paused") continue;
        await this.d.containers.restore({ checkpointId: m.checkpointId }, mo("restore", m.container));
        restored.push(m.container);
      }
    } else {
      const name = req.name ?? rec.podName;
      if ([...this.model.pods.values()].some((p) => p.name === name)) throw alreadyExists(`the pod name '${name}' is already in use: restore under another (--name)`);
      const memberName = (m: { name: string }) => (req.name === undefined ? m.name : `${req.name}-${m.name}`);
      const taken = rec.members.find((m) => this.model.resolve(memberName(m)).ok);
      if (taken) throw alreadyExists(`the container name '${memberName(taken)}' is already in use: restore the pod under another name (--name)`);
      // Its own IP when it is free (a new name is a second pod: a new IP), else the next free one.
      const ipFree = !!rec.ip && req.name === undefined &&
        !holders(this.model).some((h) => !h.removed && h.node === this.d.node && (h.spec.network?.ip ?? h.ip) === rec.ip);
      if (rec.tcpEstablished && !ipFree) throw conflict(`the pod checkpoint holds established TCP connections, which need its IP ${rec.ip ?? ""}: it is taken, or a new name gives a new one`);
      // A second pod of the same checkpoint (a new name) gets a new IP and publishes no host ports.
      const { ip: _ip, ports, ...network } = rec.podSpec.network ?? {};
      const spec: PodSpec = { ...rec.podSpec, name, node: this.d.node, network: { ...network, ...(ipFree ? { ip: rec.ip } : {}), ...(req.name === undefined && ports ? { ports } : {}) } };
      podId = (await this.d.createPod(spec, { meta: { ...o.meta, requestId: `${ctx.requestId}:pod` } })).id;
      for (const m of rec.members) {
        const r = await this.d.containers.restore({ checkpointId: m.checkpointId, name: memberName(m), pod: podId }, mo("restore", m.container));
        restored.push(r.id);
      }
    }
    await this.d.pods.handle(podId, { type: "Restored", checkpointId: rec.id, containers: restored }, ctx);
    await this.d.checkpoints.recordRestore(rec.id, podId, Math.round(performance.now() - t0), ctx, ctx.requestId);
    const pod = this.model.pods.get(podId)!;
    return { id: podId, name: pod.name, state: this.d.members(podId).every((m) => m.state === "running") ? "running" : "degraded", containers: restored };
  }
}
