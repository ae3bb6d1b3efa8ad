// The pod use cases behind `berth.cmd.pod.*`. A pod command is a sequence of its members'
// container commands (each one crash-safe and retry-safe on its own: their requestIds derive from
// the pod request's), and the pod's event records that the sequence ended. The pod's sandbox
// (namespaces, attachment) is made by its first member's start on the owning node and released
// here, on that node, before PodRemoved is written; a crash in between is finished by a retry,
// and recovery releases the sandbox of a pod the log says is gone.
import { randomBytes, randomUUID } from "node:crypto";
import type { Meta } from "../events/types.js";
import { fault } from "../fault.js";
import { conflict, alreadyExists, invalid, notFound, unavailable } from "../shared/errors.js";
import type { PodSpec } from "../shared/spec.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { DEFAULT_SHARE, type PodCommands, type PodState } from "../aggregates/pod/index.js";
import { ctxFromMeta, type Ctx, type RequestJournal } from "./command-service.js";
import type { ContainerService } from "./container-service.js";
import { idFromRequest } from "./container-service.js";
import { checkNetworkRequest, holders } from "./network-checks.js";
import type { NetworkPort, PodHost } from "./ports.js";
import { toPodView } from "../projections/views.js";
import type { CheckpointService } from "./checkpoint-service.js";
import { PodCheckpoints } from "./pod-checkpoint.js";
import { PodMigrations, type PodMigrationDeps } from "./pod-migrate.js";
import { claimName, releaseName } from "./names.js";
import type { NameCommands } from "../aggregates/name/index.js";
import type { PodCheckpointOptions } from "../events/types.js";

type Opts = { meta?: Meta; timeoutMs?: number; request?: RequestJournal };

export interface PodServiceDeps {
  node: string;
  projector: Projector;
  pods: PodCommands;
  containers: ContainerService;
  network: NetworkPort;
  host: PodHost;
  /** Checkpoints (the object store): without them pod checkpoint and restore are unknown. */
  checkpoints?: CheckpointService;
  /** Names held cluster-wide. */
  names?: NameCommands;
  /** What a pod migration needs besides (with checkpoints; without it `pod.migrate` is unknown). */
  migration?: Pick<PodMigrationDeps, "containers" | "executor" | "nodeUp" | "history">;
}

export class PodService {
  private readonly reserving = new Set<string>();
  /** The pod checkpoint saga and the pod restore (null without the object store). */
  readonly checkpoints: PodCheckpoints | null;
  /** The pod migration saga (null without checkpoints). */
  readonly migrations: PodMigrations | null;

  constructor(private readonly d: PodServiceDeps) {
    this.checkpoints = d.checkpoints
      ? new PodCheckpoints({
          node: d.node, projector: d.projector, pods: d.pods, containers: d.containers, checkpoints: d.checkpoints,
          createPod: (spec, o) => this.create(spec, o), members: (id) => this.members(id),
        })
      : null;
    this.migrations = this.checkpoints && d.migration
      ? new PodMigrations({ node: d.node, projector: d.projector, pods: d.pods, checkpoints: this.checkpoints, host: d.host, members: (id) => this.members(id), ...d.migration })
      : null;
  }

  /** Move the pod and every member to another node with their memory (pod-migrate.ts). */
  async migrate(ref: string, targetNode: string, preCopy: boolean, o: Opts = {}) {
    if (!this.migrations) throw unavailable("pod migrations need the object store, which this daemon has not opened");
    const pod = this.model.pods.get(o.request?.retry && o.request.id ? o.request.id : this.model.podIdOf(ref));
    if (!pod) throw notFound(`no pod '${ref}'`);
    await o.request?.noteId(pod.id);
    if (pod.node !== this.d.node && pod.migration?.fromNode !== this.d.node) throw conflict(`pod ${pod.name} is on node ${pod.node}: send the command to its daemon`);
    return this.migrations.migrate(pod, targetNode, preCopy, o);
  }

  /** CRIU-checkpoint every member of the pod at one point (pod-checkpoint.ts). */
  async checkpoint(ref: string, opts: Partial<PodCheckpointOptions>, o: Opts = {}) {
    const pod = this.model.pods.get(o.request?.retry && o.request.id ? o.request.id : this.model.podIdOf(ref));
    if (!pod) throw notFound(`no pod '${ref}'`);
    await o.request?.noteId(pod.id);
    if (pod.node !== this.d.node) throw conflict(`pod ${pod.name} is on node ${pod.node}: send the command to its daemon`);
    return this.need().checkpoint(pod, opts, o);
  }

  async restore(req: { checkpointId: string; name?: string }, o: Opts = {}) {
    return this.need().restore(req, o);
  }

  private need(): PodCheckpoints {
    if (!this.checkpoints) throw unavailable("pod checkpoints need the object store, which this daemon has not opened");
    return this.checkpoints;
  }

  private get model() {
    return this.d.projector.model;
  }

  private ctx(meta: Meta | undefined): Ctx {
    const ctx = ctxFromMeta(this.d.node, meta, "anonymous");
    ctx.requestId ??= randomUUID();
    return ctx;
  }

  /** What a member's command carries: the pod request's identity, its own requestId. */
  private memberOpts(o: Opts, ctx: Ctx, member: string, step: string): Opts {
    return { timeoutMs: o.timeoutMs, meta: { actor: ctx.actor, correlationId: ctx.correlationId, requestId: `${ctx.requestId}:${step}:${member}` } };
  }

  private resolve(ref: string): PodState {
    const p = this.model.pods.get(this.model.podIdOf(ref))!;
    if (p.node !== this.d.node) throw conflict(`pod ${p.name} is on node ${p.node}: send the command to its daemon`);
    if (p.checkpoint) throw conflict(`a checkpoint of pod ${p.name} is under way`);
    if (p.migration) throw conflict(`a migration of pod ${p.name} to ${p.migration.toNode} is under way`);
    return p;
  }

  async create(spec: PodSpec, o: Opts = {}): Promise<{ id: string; name: string }> {
    const ctx = this.ctx(o.meta);
    const id = o.meta?.requestId ? idFromRequest("pod", o.meta.requestId) : randomBytes(32).toString("hex");
    const mine = this.model.pods.get(id);
    if (mine) return { id, name: mine.name };
    const name = spec.name ?? `pod-${id.slice(0, 12)}`;
    const node = spec.node ?? this.d.node;
    if (node !== this.d.node && !this.model.nodes.has(node)) throw invalid(`unknown node '${node}': no daemon of that name ever joined (berth node ls)`);
    const accepted: PodSpec = { ...spec, name, node, share: spec.share ?? [...DEFAULT_SHARE], network: { ...spec.network, mode: spec.network?.mode ?? "bridge" } };
    const holder = [...this.model.pods.values()].find((p) => p.name === name);
    // Made meanwhile by a twin attempt of this request (below).
    if (holder?.id === id) return { id, name };
    if (holder || this.reserving.has(name)) throw alreadyExists(`the pod name '${name}' is already in use`);
    const held = node === this.d.node ? await checkNetworkRequest(accepted, holders(this.model), this.d.network, this.reserving) : [];
    for (const k of [name, ...held]) this.reserving.add(k);
    try {
      const create = { type: "Create" as const, data: { id, name, node, spec: accepted } };
      this.d.pods.decider.decide(create, null);
      if (spec.name !== undefined) await claimName(this.d.names, "pod", name, id, ctx, (o) => this.model.pods.has(o));
      try {
        await this.d.pods.handle(id, create, ctx);
      } catch (err) {
        // A twin attempt of this request (its retry, sent to another daemon while this one was
        // slow) made the pod first: the same id, so the same request. Its name stays.
        if (o.meta?.requestId && (await this.d.projector.holdsAfterCatchUp(() => this.model.pods.has(id)))) return { id, name };
        await releaseName(this.d.names, "pod", name, id, ctx).catch(() => undefined);
        throw err;
      }
    } finally {
      for (const k of [name, ...held]) this.reserving.delete(k);
    }
    return { id, name };
  }

  /** Starts every member that is not running, in the order they were created. */
  async start(ref: string, o: Opts = {}) {
    const pod = this.resolve(ref);
    const ctx = this.ctx(o.meta);
    for (const m of this.members(pod.id)) {
      if (m.state === "running" || m.state === "paused") continue;
      await this.d.containers.start(m.id, this.memberOpts(o, ctx, "start", m.id));
    }
    const members = this.members(pod.id);
    const ip = members.find((m) => m.ip)?.ip ?? null;
    await this.d.pods.handle(pod.id, { type: "Started", ip, containers: members.map((m) => m.id) }, ctx);
    return this.view(pod.id);
  }

  async stop(ref: string, timeoutSec: number | undefined, o: Opts = {}) {
    const pod = this.resolve(ref);
    const ctx = this.ctx(o.meta);
    // Together: each waits out its own stop timeout, so a pod stops in about the longest one.
    const running = this.members(pod.id).filter((m) => m.state === "running" || m.state === "paused" || m.state === "restarting");
    await Promise.all(running.map((m) => this.d.containers.stop(m.id, timeoutSec, this.memberOpts(o, ctx, "stop", m.id))));
    await this.d.pods.handle(pod.id, { type: "Stopped", containers: running.map((m) => m.id) }, ctx);
    return this.view(pod.id);
  }

  async kill(ref: string, signal: string | undefined, o: Opts = {}) {
    const pod = this.resolve(ref);
    const ctx = this.ctx(o.meta);
    const running = this.members(pod.id).filter((m) => m.state === "running" || m.state === "paused");
    await Promise.all(running.map((m) => this.d.containers.kill(m.id, signal, this.memberOpts(o, ctx, "kill", m.id))));
    return this.view(pod.id);
  }

  async remove(ref: string, force: boolean | undefined, o: Opts = {}) {
    const pod = this.resolve(ref);
    const ctx = this.ctx(o.meta);
    const members = this.members(pod.id);
    if (members.length && !force) {
      throw conflict(`pod ${pod.name} has ${members.length} container(s): ${members.map((m) => m.name).join(", ")}; remove them or use force`);
    }
    for (const m of members) {
      // A removal under way (a retry after a crash, or a user's own rm): wait for it instead.
      if (m.state === "removing") await this.untilGone(m.id, o.timeoutMs ?? 30_000);
      else await this.d.containers.remove(m.id, true, this.memberOpts(o, ctx, "remove", m.id));
    }
    await this.d.host.removePod(pod.id);
    fault("after-detach");
    await releaseName(this.d.names, "pod", pod.name, pod.id, ctx);
    await this.d.pods.handle(pod.id, { type: "Remove", containers: members.map((m) => m.id) }, ctx);
    return { id: pod.id };
  }

  private async untilGone(id: string, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.model.byId(id)) {
      if (Date.now() > end) throw conflict(`container ${id.slice(0, 12)} is still being removed`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private members(podId: string): ContainerState[] {
    return this.model.membersOf(podId).sort((a, b) => (a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : 1));
  }

  view(id: string) {
    const p = this.model.pods.get(id);
    return p ? toPodView(p, this.members(id)) : null;
  }
}
