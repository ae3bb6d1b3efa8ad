// The container use cases behind `berth.cmd.container.*`: resolve the ref, decide and append the
// intent, then wait for the owning node's outcome to be applied before answering.
import { randomBytes, randomUUID } from "node:crypto";
import { ANON_VOLUME_PREFIX, anonVolumeName, type ContainerSpec, type Healthcheck, type Resources, type RestartPolicy } from "../shared/spec.js";
import { OUTCOMES, type EventType, type Meta, type StoredEvent } from "../events/types.js";
import { BerthError, ErrorCode, alreadyExists, invalid, notFound } from "../shared/errors.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerState } from "../aggregates/container/state.js";
import { CommandService, ctxFromMeta, eventIdFor, type Ctx } from "./command-service.js";
import { validateSpecRules, type ContainerCommand } from "../aggregates/container/decider.js";

export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ServiceDeps {
  node: string;
  projector: Projector;
  commands: CommandService;
  /** Host checks of mount sources (runtime/mounts.ts); throws InvalidArgument. */
  validateMounts: (spec: ContainerSpec) => Promise<void>;
}

type Opts = { meta?: Meta; timeoutMs?: number };

export class ContainerService {
  /** Names being created right now, so two concurrent creates cannot both take one name. */
  private readonly reserving = new Set<string>();

  constructor(private readonly d: ServiceDeps) {}

  private get model() {
    return this.d.projector.model;
  }

  resolve(ref: string): ContainerState {
    if (typeof ref !== "string" || ref.length === 0 || ref.length > 128) throw invalid("id must be a container id, id prefix or name");
    const r = this.model.resolve(ref);
    if (r.ok) return r.c;
    if (r.why === "ambiguous") throw invalid(`container ref '${ref}' is ambiguous: give more of the id`);
    throw notFound(`no container '${ref}'`);
  }

  private ctx(meta: Meta | undefined): Ctx {
    const ctx = ctxFromMeta(this.d.node, meta, "anonymous");
    // Ids of the events this command will write are known up front, so outcomes can be matched.
    ctx.requestId ??= randomUUID();
    return ctx;
  }

  async create(spec: ContainerSpec, o: Opts = {}): Promise<{ id: string; name: string }> {
    const ctx = this.ctx(o.meta);
    return this.createWith(spec, ctx);
  }

  private async createWith(spec: ContainerSpec, ctx: Ctx): Promise<{ id: string; name: string }> {
    validateSpecRules(spec);
    const node = spec.node ?? this.d.node;
    const image = this.model.image(node, spec.image);
    if (!image) throw notFound(`no image '${spec.image}' on node ${node}`);
    const id = randomBytes(32).toString("hex");
    spec = withAnonymousVolumes(spec, id);
    await this.d.validateMounts(spec);
    const name = spec.name ?? `berth-${id.slice(0, 12)}`;
    if (this.model.idOfName(name) || this.reserving.has(name)) throw alreadyExists(`the name '${name}' is already in use`);
    this.reserving.add(name);
    try {
      const accepted: ContainerSpec = { ...spec, name, node };
      await this.d.commands.handle(
        id,
        { type: "Create", data: { id, name, image: image.name, imageDigest: image.digest, node, spec: accepted } },
        ctx,
      );
    } finally {
      this.reserving.delete(name);
    }
    return { id, name };
  }

  async run(spec: ContainerSpec, o: Opts = {}) {
    const ctx = this.ctx(o.meta);
    const { id, name } = await this.createWith(spec, ctx);
    const started = await this.act(id, { type: "Start" }, ctx, o.timeoutMs);
    return { id, name, state: started.state, pid: started.pid };
  }

  async start(ref: string, o: Opts = {}) {
    const c = this.resolve(ref);
    const s = await this.act(c.id, { type: "Start" }, this.ctx(o.meta), o.timeoutMs);
    return { id: c.id, state: s.state, pid: s.pid };
  }

  async stop(ref: string, timeoutSec: number | undefined, o: Opts = {}) {
    const c = this.resolve(ref);
    const t = timeoutSec ?? c.spec.stopTimeoutSec ?? 10;
    const s = await this.act(c.id, { type: "Stop", signal: c.spec.stopSignal ?? "SIGTERM", timeoutSec: t }, this.ctx(o.meta), Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, (t + 15) * 1000));
    return { id: c.id, state: s.state, exitCode: s.exitCode };
  }

  async kill(ref: string, signal: string | undefined, o: Opts = {}) {
    const c = this.resolve(ref);
    const s = await this.act(c.id, { type: "Kill", signal: normalizeSignal(signal ?? "SIGKILL") }, this.ctx(o.meta), o.timeoutMs);
    return { id: c.id, state: s.state };
  }

  async restart(ref: string, timeoutSec: number | undefined, o: Opts = {}) {
    const c = this.resolve(ref);
    const t = timeoutSec ?? c.spec.stopTimeoutSec ?? 10;
    const s = await this.act(c.id, { type: "Restart", timeoutSec: t }, this.ctx(o.meta), Math.max(o.timeoutMs ?? DEFAULT_TIMEOUT_MS, (t + 15) * 1000));
    return { id: c.id, state: s.state, pid: s.pid };
  }

  async pause(ref: string, o: Opts = {}) {
    const c = this.resolve(ref);
    const s = await this.act(c.id, { type: "Pause" }, this.ctx(o.meta), o.timeoutMs);
    return { id: c.id, state: s.state };
  }

  async unpause(ref: string, o: Opts = {}) {
    const c = this.resolve(ref);
    const s = await this.act(c.id, { type: "Unpause" }, this.ctx(o.meta), o.timeoutMs);
    return { id: c.id, state: s.state };
  }

  async update(
    ref: string,
    patch: { restartPolicy?: RestartPolicy; resources?: Resources; healthcheck?: Healthcheck | null },
    o: Opts = {},
  ) {
    const c = this.resolve(ref);
    await this.d.commands.handle(c.id, { type: "Update", ...patch }, this.ctx(o.meta));
    return { id: c.id };
  }

  async remove(ref: string, force: boolean | undefined, o: Opts = {}) {
    const c = this.resolve(ref);
    await this.act(c.id, { type: "Remove", force: force ?? false }, this.ctx(o.meta), o.timeoutMs);
    return { id: c.id };
  }

  /**
   * Append the intent and wait for its outcome. Resolves with the container's state once the
   * outcome is applied; a failed outcome becomes a RuntimeError with the tool's words.
   */
  private async act(id: string, cmd: ContainerCommand, ctx: Ctx, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ContainerState> {
    const intentId = eventIdFor(ctx, `${cmd.type}#0`);
    const answers = OUTCOMES[INTENT_OF[cmd.type]] ?? [];
    const waiter = this.d.projector.waitFor((e) => e.causationId === intentId && answers.includes(e.type), timeoutMs);
    let intent: StoredEvent[];
    try {
      intent = await this.d.commands.handle(id, cmd, ctx);
    } catch (err) {
      waiter.cancel();
      throw err;
    }
    // Nothing to wait for when the decision was a plain fact (a stop that cancels a restart).
    if (intent.length === 0 || !OUTCOMES[intent[0].type]) {
      waiter.cancel();
      return this.model.byId(id)!;
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
    if (outcome.type === "ContainerStartFailed" || outcome.type === "ContainerActionFailed") {
      throw new BerthError(ErrorCode.RuntimeError, outcome.data.error);
    }
    const after = this.model.byId(id);
    if (!after) return { ...this.model.byId(id), id, state: "removing" } as ContainerState;
    return after;
  }
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
};

const SIGNALS = new Set([
  "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
  "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
  "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGSYS",
]);

/** `TERM`, `sigterm`, `SIGTERM` or `15` → a signal name or number runc accepts. */
export function normalizeSignal(sig: string | number): string {
  if (typeof sig === "number" || /^\d+$/.test(sig)) {
    const n = Number(sig);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw invalid(`invalid signal '${sig}'`);
    return String(n);
  }
  const up = sig.toUpperCase();
  const name = up.startsWith("SIG") ? up : `SIG${up}`;
  if (!SIGNALS.has(name)) throw invalid(`invalid signal '${sig}'`);
  return name;
}
