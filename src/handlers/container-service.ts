// The container use cases behind `berth.cmd.container.*`: resolve the ref, decide and append the
// intent, then wait for the owning node's outcome to be applied before answering.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { ANON_VOLUME_PREFIX, anonVolumeName, isAnonVolumeOf, networkMode, volumesOf, type ContainerSpec, type Healthcheck, type Resources, type RestartPolicy } from "../shared/spec.js";
import { OUTCOMES, type EventType, type Meta, type StoredEvent } from "../events/types.js";
import { BerthError, ErrorCode, alreadyExists, conflict, invalid, notFound, unavailable } from "../shared/errors.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { ctxFromMeta, eventIdFor, type Ctx, type RequestJournal } from "./command-service.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { ContainerCommand } from "../aggregates/container/decider.js";
import { normalizeSignal } from "../shared/signals.js";
import { checkNetworkRequest, holders } from "./network-checks.js";
import type { NetworkPort } from "./ports.js";
import { claimName, releaseName } from "./names.js";
import type { NameCommands } from "../aggregates/name/index.js";
import { withImageVolumes, type UpgradeChanges } from "../aggregates/container/upgrade.js";
import { healthConfig } from "./health.js";

export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ServiceDeps {
  node: string;
  projector: Projector;
  commands: ContainerCommands;
  /** Host checks of mount sources (runtime/mounts.ts); throws InvalidArgument. */
  validateMounts: (spec: ContainerSpec) => Promise<void>;
  /** One container's whole history (a retried request looks for its own events there). */
  history: (id: string) => Promise<StoredEvent[]>;
  /** This node's bridge network, to check IPs and host ports against. */
  network: NetworkPort;
  /** Names held cluster-wide (without it, names are unique as far as this daemon's model sees). */
  names?: NameCommands;
  /** Whether a node's daemon answers (its heartbeat); without it every node counts as up. */
  nodeUp?: (node: string) => boolean;
}

type Opts = { meta?: Meta; timeoutMs?: number; request?: RequestJournal };

export class ContainerService {
  /** Names being created right now, so two concurrent creates cannot both take one name. */
  private readonly reserving = new Set<string>();

  constructor(private readonly d: ServiceDeps) {}

  private get model() {
    return this.d.projector.model;
  }

  /**
   * The container a command acts on. A retried request acts on the one its first attempt
   * resolved (noted in the request journal), even if that one is gone by now.
   */
  private async target(ref: string, request: RequestJournal | undefined): Promise<string> {
    if (request?.retry && request.id) return request.id;
    const c = this.resolve(ref);
    await request?.noteId(c.id);
    return c.id;
  }

  resolve(ref: string): ContainerState {
    return this.model.byId(this.model.idOf(ref))!;
  }


  private ctx(meta: Meta | undefined): Ctx {
    const ctx = ctxFromMeta(this.d.node, meta, "anonymous");
    // Ids of the events this command will write are known up front, so outcomes can be matched.
    ctx.requestId ??= randomUUID();
    return ctx;
  }

  async create(spec: ContainerSpec, o: Opts = {}): Promise<{ id: string; name: string }> {
    const ctx = this.ctx(o.meta);
    return this.createWith(spec, ctx, o.meta?.requestId);
  }

  private async createWith(spec: ContainerSpec, ctx: Ctx, requestId: string | undefined): Promise<{ id: string; name: string }> {
    // The id of a requested container derives from its requestId: a retry finds the container its
    // first attempt created (the body was checked to be the same) instead of making a second one.
    const id = requestId ? idFromRequest("container", requestId) : randomBytes(32).toString("hex");
    const mine = this.model.byId(id);
    if (mine) return { id, name: mine.name };
    // A member lives on its pod's node, and its image must be there.
    const podNode = spec.pod != null ? this.model.pods.get(this.model.podIdOf(spec.pod))!.node : undefined;
    const node = podNode ?? spec.node ?? this.d.node;
    if (node !== this.d.node && !this.model.nodes.has(node)) throw invalid(`unknown node '${node}': no daemon of that name ever joined (berth node ls)`);
    const image = this.model.image(node, spec.image);
    if (!image) throw notFound(`no image '${spec.image}' on node ${node}`);
    spec = withAnonymousVolumes(spec, id);
    // As Docker: the image's labels under the container's own, its VOLUMEs as anonymous volumes.
    if (Object.keys(image.config.labels).length) spec = { ...spec, labels: { ...image.config.labels, ...spec.labels } };
    if (image.config.volumes?.length) spec = { ...spec, mounts: withImageVolumes(spec.mounts ?? [], id, image.config.volumes, image.name, "keep") };
    if (spec.pod != null) {
      // A member takes its network and hostname from its pod, and lives on the pod's node.
      const pod = this.model.pods.get(this.model.podIdOf(spec.pod))!;
      if (spec.network) throw invalid(`a member of pod ${pod.name} takes its network from the pod: drop 'network'`);
      if (spec.hostname) throw invalid(`a member of pod ${pod.name} has the pod's hostname: drop 'hostname'`);
      if (spec.node && spec.node !== pod.node) throw invalid(`pod ${pod.name} is on node ${pod.node}, not ${spec.node}`);
      spec = { ...spec, pod: pod.id, node: pod.node };
    } else {
      // Bridge is the default (docker's); the accepted spec says so, whatever the default becomes.
      spec = { ...spec, node, network: { ...spec.network, mode: spec.network?.mode ?? "bridge" } };
    }
    await this.d.validateMounts(spec);
    const name = spec.name ?? `berth-${id.slice(0, 12)}`;
    const holder = this.model.idOfName(name);
    // Made meanwhile by a twin attempt of this request (below).
    if (holder === id) return { id, name };
    if (holder || this.reserving.has(name)) throw alreadyExists(`the name '${name}' is already in use`);
    // Another node's subnet and ports are that node's to check (it refuses the start).
    const held = spec.node === this.d.node ? await checkNetworkRequest(spec, holders(this.model), this.d.network, this.reserving) : [];
    for (const k of [name, ...held]) this.reserving.add(k);
    try {
      const accepted: ContainerSpec = { ...spec, name };
      const create: ContainerCommand = { type: "Create", data: { id, name, image: image.name, imageDigest: image.digest, node: spec.node!, spec: accepted } };
      // Refused before anything is written (the decision is pure), then the name, cluster-wide:
      // of two daemons creating it at once, one gets AlreadyExists.
      this.d.commands.decider.decide(create, null);
      // A name made of the (random or request-derived) id needs no claim: no one else makes it.
      if (spec.name !== undefined) await claimName(this.d.names, "container", name, id, ctx, (o) => !!this.model.byId(o));
      try {
        await this.d.commands.handle(id, create, ctx);
      } catch (err) {
        // A twin attempt of this request (its retry, sent to another daemon while this one was
        // slow) made the container first: the same id, so the same request. Its name stays.
        if (requestId && (await this.d.projector.holdsAfterCatchUp(() => !!this.model.byId(id)))) return { id, name };
        await releaseName(this.d.names, "container", name, id, ctx).catch(() => undefined);
        throw err;
      }
    } finally {
      for (const k of [name, ...held]) this.reserving.delete(k);
    }
    return { id, name };
  }

  async run(spec: ContainerSpec, o: Opts = {}) {
    const ctx = this.ctx(o.meta);
    const { id, name } = await this.createWith(spec, ctx, o.meta?.requestId);
    const started = await this.act(id, { type: "Start" }, ctx, o.timeoutMs, o.request);
    return { id, name, state: started.state, pid: started.pid };
  }

  async start(ref: string, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const s = await this.act(id, { type: "Start" }, this.ctx(o.meta), o.timeoutMs, o.request);
    return { id, state: s.state, pid: s.pid };
  }

  async stop(ref: string, timeoutSec: number | undefined, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const spec = this.model.byId(id)?.spec;
    const t = timeoutSec ?? spec?.stopTimeoutSec ?? 10;
    const cmd = { type: "Stop", signal: spec?.stopSignal ?? "SIGTERM", timeoutSec: t } as const;
    const s = await this.act(id, cmd, this.ctx(o.meta), Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, (t + 15) * 1000), o.request);
    return { id, state: s.state, exitCode: s.exitCode };
  }

  async kill(ref: string, signal: string | undefined, o: Opts = {}) {
    const sig = normalizeSignal(signal ?? "SIGKILL");
    const id = await this.target(ref, o.request);
    const s = await this.act(id, { type: "Kill", signal: sig }, this.ctx(o.meta), o.timeoutMs, o.request);
    return { id, state: s.state };
  }

  async restart(ref: string, timeoutSec: number | undefined, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const t = timeoutSec ?? this.model.byId(id)?.spec.stopTimeoutSec ?? 10;
    const s = await this.act(id, { type: "Restart", timeoutSec: t }, this.ctx(o.meta), Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, (t + 15) * 1000), o.request);
    return { id, state: s.state, pid: s.pid };
  }

  async pause(ref: string, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const s = await this.act(id, { type: "Pause" }, this.ctx(o.meta), o.timeoutMs, o.request);
    return { id, state: s.state };
  }

  async unpause(ref: string, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const s = await this.act(id, { type: "Unpause" }, this.ctx(o.meta), o.timeoutMs, o.request);
    return { id, state: s.state };
  }

  async update(
    ref: string,
    patch: { restartPolicy?: RestartPolicy; resources?: Resources; healthcheck?: Healthcheck | null; annotations?: Record<string, string | null> },
    o: Opts = {},
  ) {
    const id = await this.target(ref, o.request);
    const ctx = this.ctx(o.meta);
    // An update is a fact, not an intent: a retry whose update is in the log is done.
    if (!(o.request?.retry && (await this.earlierAttempt(id, eventIdFor(ctx, "Update#0"), [])))) {
      await this.d.commands.handle(id, { type: "Update", ...patch }, ctx);
    }
    return { id };
  }

  async remove(ref: string, force: boolean | undefined, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    await this.act(id, { type: "Remove", force: force ?? false }, this.ctx(o.meta), o.timeoutMs, o.request);
    return { id };
  }

  /**
   * The upgrade saga (aggregates/container/upgrade.ts): answers once the new revision passed its
   * health gate, or with the reason it was rolled back.
   */
  async upgrade(ref: string, req: UpgradeRequest, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const c = this.model.byId(id);
    if (!c) throw notFound("no such container");
    const image = this.model.image(c.node, req.image);
    if (!image) throw notFound(`no image '${req.image}' on node ${c.node}`);
    const { image: _i, healthGateSec, ...changes } = req;
    const gate = healthGateSec ?? defaultHealthGateSec(c.spec.healthcheck);
    const cmd: ContainerCommand = {
      type: "Upgrade",
      image: { name: image.name, digest: image.digest, config: image.config },
      oldImage: this.model.image(c.node, c.imageDigest)?.config ?? null,
      changes,
      healthGateSec: gate,
    };
    const s = await this.act(id, cmd, this.ctx(o.meta), this.sagaTimeoutMs(c, gate, o.timeoutMs), o.request);
    return { id, state: s.state, image: s.image, revision: s.revision };
  }

  async rollback(ref: string, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const c = this.model.byId(id);
    if (!c) throw notFound("no such container");
    if (c.previous && !this.model.image(c.node, c.previous.imageDigest)) {
      throw notFound(`the previous revision's image ${c.previous.image} (${c.previous.imageDigest}) is no longer on node ${c.node}`);
    }
    const s = await this.act(id, { type: "Rollback" }, this.ctx(o.meta), this.sagaTimeoutMs(c, 0, o.timeoutMs), o.request);
    return { id, state: s.state, image: s.image, revision: s.revision };
  }

  /**
   * CRIU-checkpoint a running container into the object store (the executor's checkpoint saga).
   * The checkpoint's id derives from the requestId, so a retry finds its own checkpoint.
   */
  async checkpoint(ref: string, o2: { leaveRunning?: boolean; tcpEstablished?: boolean; fileLocks?: boolean; preDump?: boolean; partOf?: string }, o: Opts = {}) {
    if (o2.preDump && o2.leaveRunning === false) throw invalid("a pre-dump always leaves the container running");
    const id = await this.target(ref, o.request);
    const ctx = this.ctx(o.meta);
    const checkpointId = o.meta?.requestId ? idFromRequest("checkpoint", o.meta.requestId) : randomBytes(32).toString("hex");
    const cmd: ContainerCommand = {
      type: "Checkpoint", checkpointId, leaveRunning: (o2.leaveRunning ?? false) || (o2.preDump ?? false), tcpEstablished: o2.tcpEstablished ?? false,
      fileLocks: o2.fileLocks ?? false, ...(o2.preDump ? { preDump: true } : {}), ...(o2.partOf ? { partOf: o2.partOf } : {}),
    };
    const t0 = performance.now();
    await this.act(id, cmd, ctx, Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 300_000), o.request);
    if (o2.preDump) {
      // A pre-dump is no checkpoint of its own: what it froze is in its outcome.
      const done = (await this.d.history(id)).find((e) => e.type === "ContainerCheckpointed" && e.data.checkpointId === checkpointId);
      const frozenMs = done?.type === "ContainerCheckpointed" ? done.data.frozenMs ?? 0 : 0;
      return { id, checkpointId, preDump: true, sizeBytes: 0, durationMs: Math.round(performance.now() - t0), frozenMs };
    }
    const rec = this.model.containerCheckpoint(checkpointId);
    if (!rec) throw new BerthError(ErrorCode.RuntimeError, `checkpoint ${checkpointId} was made but its record is not in the log`);
    return { id, checkpointId, sizeBytes: rec.sizeBytes, durationMs: rec.durationMs, frozenMs: rec.frozenMs, dumpMs: rec.dumpMs, uploadMs: rec.uploadMs };
  }

  /**
   * Bring back a checkpoint's process: into its own container (which must not run), or with
   * `name` into a new container made from the checkpoint's spec (a new id and IP; with `pod`,
   * a member of that pod instead of the checkpointed one's).
   */
  async restore(req: { checkpointId: string; name?: string; pod?: string }, o: Opts = {}) {
    if (this.model.podCheckpoint(req.checkpointId)) throw invalid(`checkpoint ${req.checkpointId} is a pod's: restore it with pod restore`);
    const rec = this.model.containerCheckpoint(req.checkpointId);
    if (!rec) throw notFound(`no checkpoint '${req.checkpointId}'`);
    const ctx = this.ctx(o.meta);
    let id: string;
    if (req.name === undefined) {
      if (!this.model.byId(rec.container)) throw notFound(`the container of checkpoint ${req.checkpointId} (${rec.containerName}) is gone: restore it under a new name`);
      id = rec.container;
    } else {
      if (!this.model.image(rec.node, rec.imageDigest)) throw notFound(`image ${rec.image} (${rec.imageDigest}) is not on node ${rec.node}`);
      // A new container gets a new IP, and CRIU cannot bring back a TCP connection on another one.
      if (rec.tcpEstablished && !req.pod && networkMode(rec.spec) === "bridge") {
        throw conflict(`checkpoint ${req.checkpointId.slice(0, 12)} holds established TCP connections, which need its IP ${rec.ip ?? ""}: restore it into its own container (${rec.containerName}), not under a new name`);
      }
      // Its own anonymous volumes and a new IP: the spec of the checkpointed container, renamed.
      const mounts = rec.spec.mounts?.map((m) => (m.type === "volume" && m.source && isAnonVolumeOf(m.source, rec.container) ? { ...m, source: undefined } : m));
      const { ip: _ip, ...network } = rec.spec.network ?? {};
      const spec: ContainerSpec = {
        ...rec.spec, name: req.name, image: rec.imageDigest, ...(mounts ? { mounts } : {}), ...(rec.spec.network ? { network } : {}), ...(req.pod ? { pod: req.pod } : {}),
      };
      ({ id } = await this.createWith(spec, ctx, o.meta?.requestId));
    }
    const s = await this.act(id, { type: "Restore", checkpointId: req.checkpointId }, ctx, Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 300_000), o.request);
    return { id, name: s.name, state: s.state, pid: s.pid };
  }

  /**
   * Move a running container to another node with its memory (the migration saga: the source
   * dumps it, the target restores it, ownership moves; if the target fails, the source restores
   * it from the same checkpoint). Refused up front when the target is unknown, down or lacks its image.
   */
  async migrate(ref: string, req: { targetNode: string; preCopy?: boolean }, o: Opts = {}) {
    const id = await this.target(ref, o.request);
    const c = this.model.byId(id);
    if (!c) throw notFound("no such container");
    if (!this.model.nodes.has(req.targetNode)) throw invalid(`unknown node '${req.targetNode}': no daemon of that name ever joined (berth node ls)`);
    if (req.targetNode !== c.node && this.d.nodeUp && !this.d.nodeUp(req.targetNode)) throw unavailable(`node ${req.targetNode} is down: its daemon does not answer`);
    if (req.targetNode !== c.node && !this.model.image(req.targetNode, c.imageDigest)) {
      throw notFound(`its image ${c.image} (${c.imageDigest}) is not on node ${req.targetNode}: import it there first`);
    }
    // Its volumes move with it: one that another container of its node mounts cannot.
    const mine = new Set(volumesOf(c.spec));
    const sharer = [...this.model.containers.values()].find((x) => x.id !== id && x.node === c.node && volumesOf(x.spec).some((v) => mine.has(v)));
    if (sharer) throw conflict(`its volume '${volumesOf(sharer.spec).find((v) => mine.has(v))}' is mounted by container ${sharer.name} too: a volume moves with one container only`);
    const ctx = this.ctx(o.meta);
    const checkpointId = idFromRequest("migration", ctx.requestId!);
    const s = await this.act(id, { type: "Migrate", checkpointId, toNode: req.targetNode, preCopy: req.preCopy ?? false }, ctx, Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, 600_000), o.request);
    const done = (await this.d.history(id)).find((e) => e.type === "ContainerMigrated" && e.data.checkpointId === checkpointId);
    return { id, node: s.node, downtimeMs: done?.type === "ContainerMigrated" ? done.data.downtimeMs : null };
  }

  /** Two stops, two starts and the gate, with room to spare. */
  private sagaTimeoutMs(c: ContainerState, gateSec: number, timeoutMs = DEFAULT_TIMEOUT_MS): number {
    return Math.max(timeoutMs, (2 * ((c.spec.stopTimeoutSec ?? 10) + 10) + gateSec + 60) * 1000);
  }

  /**
   * Append the intent and wait for its outcome. Resolves with the container's state once the
   * outcome is applied; a failed outcome becomes a RuntimeError with the tool's words. A retried
   * request whose intent is already in the log appends nothing: it answers from the outcome
   * there, or waits for it.
   */
  private async act(id: string, cmd: ContainerCommand, ctx: Ctx, timeoutMs = DEFAULT_TIMEOUT_MS, request?: RequestJournal): Promise<ContainerState> {
    const intentId = eventIdFor(ctx, `${cmd.type}#0`);
    const answers = OUTCOMES[INTENT_OF[cmd.type]] ?? [];
    // Registered before anything is appended or read, so that a fast outcome is not missed.
    const waiter = this.d.projector.waitFor((e) => e.causationId === intentId && answers.includes(e.type), timeoutMs);
    try {
      let earlier = request?.retry ? await this.earlierAttempt(id, intentId, answers) : null;
      if (!earlier) {
        try {
          this.podFree(id, ctx);
          const intent = await this.d.commands.handle(id, cmd, ctx);
          // Nothing to wait for when the decision was a plain fact (a stop that cancels a restart).
          if (intent.length === 0 || !OUTCOMES[intent[0].type]) {
            waiter.cancel();
            return this.model.byId(id)!;
          }
        } catch (err) {
          // Refused because a twin attempt of this request (its retry, sent to another daemon
          // while this one was slow) appended the same intent first: answer as that one does.
          earlier = request && err instanceof BerthError && err.code === ErrorCode.Conflict ? await this.earlierAttempt(id, intentId, answers) : null;
          if (!earlier) throw err;
        }
      }
      if (earlier?.answer) {
        waiter.cancel();
        await this.d.projector.waitForSeq(earlier.answer.seq);
        return this.answer(id, earlier.answer);
      }
    } catch (err) {
      waiter.cancel();
      throw err;
    }
    let outcome: StoredEvent;
    try {
      outcome = await waiter.promise;
    } catch (err) {
      if (err instanceof BerthError && err.code === ErrorCode.Timeout) {
        throw new BerthError(ErrorCode.Timeout, `${cmd.type.toLowerCase()} was requested but its outcome was not seen within ${timeoutMs} ms`);
      }
      throw err;
    }
    return this.answer(id, outcome);
  }

  /**
   * A member of a pod whose checkpoint or migration is under way takes commands from that saga
   * only (they carry its intent as their correlation): a user's start or stop in the middle
   * would run it on two nodes, or lose it.
   */
  private podFree(id: string, ctx: Ctx): void {
    const c = this.model.byId(id);
    const pod = c?.spec.pod ? this.model.pods.get(c.spec.pod) : undefined;
    if (!pod) return;
    const sagas = [pod.migration?.eventId, pod.checkpoint?.eventId].filter((x): x is string => !!x);
    if (!sagas.length || sagas.includes(ctx.correlationId)) return;
    throw conflict(pod.migration ? `its pod ${pod.name} is migrating to ${pod.migration.toNode}` : `a checkpoint of its pod ${pod.name} is under way`);
  }

  /**
   * What an earlier attempt of this request left in the container's history: null when its
   * event is not there; else the event that answers it (its outcome, or the event itself when it
   * was a plain fact), or null while the outcome is still to come.
   */
  private async earlierAttempt(id: string, eventId: string, answers: readonly EventType[]): Promise<{ answer: StoredEvent | null } | null> {
    const history = await this.d.history(id);
    const i = history.findIndex((e) => e.eventId === eventId);
    if (i < 0) return null;
    if (!OUTCOMES[history[i].type]) return { answer: history[i] };
    return { answer: history.slice(i + 1).find((e) => e.causationId === eventId && answers.includes(e.type)) ?? null };
  }

  private answer(id: string, outcome: StoredEvent): ContainerState {
    if (outcome.type === "ContainerStartFailed" || outcome.type === "ContainerActionFailed") {
      throw new BerthError(ErrorCode.RuntimeError, outcome.data.error);
    }
    if (outcome.type === "MigrationFailed") {
      throw new BerthError(ErrorCode.RuntimeError, `migration failed, it runs on ${outcome.data.node} again (restored from the same checkpoint): ${outcome.data.reason}`);
    }
    // An upgrade that ended back on the old revision failed; a rollback that did is what was asked.
    if (outcome.type === "ContainerUpgradeRolledBack" && outcome.data.reason !== "requested") {
      throw new BerthError(ErrorCode.RuntimeError, `upgrade rolled back to revision ${outcome.data.revision} (${outcome.data.image}): ${outcome.data.reason}`);
    }
    const after = this.model.byId(id);
    if (!after) return { ...this.model.byId(id), id, state: "removing" } as ContainerState;
    return after;
  }
}

/** `container.upgrade`'s body (API.md), the id aside. */
export interface UpgradeRequest extends UpgradeChanges {
  image: string;
  healthGateSec?: number;
}

/**
 * Without one given: the healthcheck's start period + interval × retries (the time it needs to
 * call the new revision unhealthy), else a few seconds of staying up.
 */
export function defaultHealthGateSec(hc: Healthcheck | null | undefined): number {
  if (!hc) return DEFAULT_GATE_SEC;
  const h = healthConfig(hc);
  return Math.min(3600, Math.ceil((h.startPeriodMs + h.intervalMs * h.retries + h.timeoutMs) / 1000));
}
export const DEFAULT_GATE_SEC = 3;

/** A new aggregate's id, derived from the request that makes it (64 hex, like a random one). */
export function idFromRequest(kind: string, requestId: string): string {
  return createHash("sha256").update(`${kind}\0${requestId}`).digest("hex");
}

/** Name the anonymous volumes (no source) after the container; refuse the reserved prefix. */
function withAnonymousVolumes(spec: ContainerSpec, id: string): ContainerSpec {
  if (!spec.mounts?.length) return spec;
  const mounts = spec.mounts.map((m, i) => {
    if (m.type !== "volume") return m;
    if (m.source === undefined) return { ...m, source: anonVolumeName(id, i) };
    if (m.source.startsWith(ANON_VOLUME_PREFIX)) throw invalid(`volume names starting with '${ANON_VOLUME_PREFIX}' are reserved for anonymous volumes`);
    return m;
  });
  return { ...spec, mounts };
}

/** The intent each command records; its outcomes (OUTCOMES) answer the command. */
const INTENT_OF: Record<ContainerCommand["type"], EventType> = {
  Create: "ContainerCreated",
  Start: "ContainerStartRequested",
  Stop: "ContainerStopRequested",
  Kill: "ContainerKillRequested",
  Restart: "ContainerRestartRequested",
  Pause: "ContainerPauseRequested",
  Unpause: "ContainerUnpauseRequested",
  Update: "ContainerUpdated",
  Remove: "ContainerRemoveRequested",
  Upgrade: "ContainerUpgradeRequested",
  Rollback: "ContainerRollbackRequested",
  Checkpoint: "ContainerCheckpointRequested",
  Restore: "ContainerRestoreRequested",
  Migrate: "ContainerMigrationRequested",
};
