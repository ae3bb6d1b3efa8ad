// `berth exec`: run a process in a running container of this node, piped (one request, one reply
// with bounded output) or on a terminal (a session the HTTP API streams). Both are audited the
// same way: ContainerExecStarted before the process runs, ContainerExecExited when it has ended,
// with the actor who asked. Neither changes the container's state.
import { randomUUID } from "node:crypto";
import type { Meta, StoredEvent } from "../events/types.js";
import { BerthError, ErrorCode, conflict, invalid, notFound } from "../shared/errors.js";
import { logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { Projector } from "../projections/projector.js";
import { nextState } from "../aggregates/container/transitions.js";
import type { ExecHost, ExecProcessOptions, TtyProcess } from "./ports.js";
import type { ExecResult } from "../shared/host-facts.js";
import { ctxFromMeta, eventIdFor, type Ctx, type RequestJournal } from "./command-service.js";
import type { ContainerCommands } from "../aggregates/container/index.js";

/** Each stream's output kept by the daemon. */
export const EXEC_STREAM_MAX = 1024 * 1024;
/**
 * The reply's stdout and stderr together, as JSON, stay below this: the reply must fit NATS's
 * max_payload (1 MiB) with its envelope.
 */
export const EXEC_REPLY_BUDGET = 1024 * 1024 - 16 * 1024;
export const EXEC_DEFAULT_TIMEOUT_SEC = 600;
/** The exit code recorded for a process killed at its timeout (SIGKILL, as a shell reports it). */
export const EXEC_KILLED_EXIT = 137;

export interface ExecRequest {
  id: string;
  cmd: string[];
  env?: string[];
  user?: string;
  workdir?: string;
  timeoutSec?: number;
}

export interface ExecReply {
  execId: string;
  exitCode: number;
  stdout: string;
  stderr: string;
  truncated: boolean;
  timedOut: boolean;
}

/** A terminal session handed to the transport, already recorded as started. */
export interface TtySession {
  execId: string;
  process: TtyProcess;
  /** Resolves with the exit code once the end is recorded too. */
  done: Promise<number>;
}

export interface ExecServiceDeps {
  node: string;
  projector: Projector;
  commands: ContainerCommands;
  host: ExecHost;
  /** One container's whole history (a retried request looks for its own exec there). */
  history: (id: string) => Promise<StoredEvent[]>;
}

const ENV_RE = /^[^=\0]+=[^\0]*$/;
const log = logger("exec");

export class ExecService {
  private readonly running = new Set<{ abort: () => void; done: Promise<unknown> }>();
  private stopping = false;

  constructor(private readonly d: ExecServiceDeps) {}

  /** Run `cmd` to its end; the reply carries its exit code and bounded output. */
  async exec(req: ExecRequest, meta?: Meta, request?: RequestJournal): Promise<ExecReply> {
    const timeoutMs = (req.timeoutSec ?? EXEC_DEFAULT_TIMEOUT_SEC) * 1000;
    if (request?.retry && meta?.requestId) {
      const earlier = await this.earlierAttempt(req, meta);
      if (earlier) return earlier;
    }
    const { c, ctx, execId, opts } = await this.begin(req, meta);
    const ac = new AbortController();
    let result: ExecResult | null = null;
    const run = (async () => {
      try {
        result = await this.d.host.exec(c.id, req.cmd, { ...opts, timeoutMs, maxOutput: EXEC_STREAM_MAX, signal: ac.signal });
      } finally {
        await this.end(c.id, execId, result ? exitOf(result) : -1, ctx);
      }
    })();
    const entry = { abort: () => ac.abort(), done: run.catch(() => undefined) };
    this.running.add(entry);
    try {
      await run;
    } finally {
      this.running.delete(entry);
    }
    const r = result as unknown as ExecResult;
    const fit = fitOutput(r.stdout, r.stderr, EXEC_REPLY_BUDGET);
    return { execId, exitCode: exitOf(r), stdout: fit.stdout, stderr: fit.stderr, truncated: r.truncated || fit.cut, timedOut: r.timedOut };
  }

  /**
   * A retry of a request whose first attempt began (the daemon died, the reply was lost): a
   * command is never run twice for one requestId. When the first run's end is in the log, the
   * answer is its exit code (its output was not kept: `truncated`); when it started and its end
   * is not there, Conflict. Null: the first attempt never started the command.
   */
  private async earlierAttempt(req: ExecRequest, meta: Meta): Promise<ExecReply | null> {
    const id = this.d.projector.model.idOf(req.id, { historic: true });
    const execId = eventIdFor(ctxFromMeta(this.d.node, meta, "anonymous"), "exec");
    const history = await this.d.history(id);
    if (!history.some((e) => e.type === "ContainerExecStarted" && e.data.execId === execId)) return null;
    const end = history.find((e) => e.type === "ContainerExecExited" && e.data.execId === execId);
    if (!end || end.type !== "ContainerExecExited") {
      throw conflict(`this request's exec ${execId} started before and its end is not in the log; it is not run again`);
    }
    const exitCode = end.data.exitCode;
    return { execId, exitCode, stdout: "", stderr: "", truncated: true, timedOut: exitCode === EXEC_KILLED_EXIT };
  }

  /** Start `cmd` on a terminal of `cols`×`rows`; the caller streams it and kills it when its client goes. */
  async openTty(req: ExecRequest & { cols: number; rows: number }, meta?: Meta): Promise<TtySession> {
    const { c, ctx, execId, opts } = await this.begin(req, meta);
    let proc: TtyProcess;
    try {
      // A terminal program expects TERM; the client's own is not known here (Docker sets xterm too).
      const env = opts.env?.some((e) => e.startsWith("TERM=")) ? opts.env : [...(opts.env ?? []), "TERM=xterm"];
      proc = await this.d.host.execTty(c.id, req.cmd, { ...opts, env, cols: req.cols, rows: req.rows });
    } catch (err) {
      await this.end(c.id, execId, -1, ctx);
      throw err;
    }
    const timer = req.timeoutSec ? setTimeout(() => void proc.kill(), req.timeoutSec * 1000) : null;
    const done = proc.exited.then(async (code) => {
      if (timer) clearTimeout(timer);
      await this.end(c.id, execId, code, ctx);
      return code;
    });
    const entry = { abort: () => void proc.kill(), done: done.catch(() => undefined) };
    this.running.add(entry);
    void done.finally(() => this.running.delete(entry)).catch(() => undefined);
    return { execId, process: proc, done };
  }

  /** End every session (daemon shutdown); each end is still recorded. */
  async stop(): Promise<void> {
    this.stopping = true;
    const all = [...this.running];
    for (const r of all) r.abort();
    await Promise.allSettled(all.map((r) => r.done));
  }

  /**
   * The checks every exec passes before anything happens, then ContainerExecStarted. A refused
   * exec leaves neither an event nor a process behind.
   */
  private async begin(req: ExecRequest, meta?: Meta): Promise<{ c: ContainerState; ctx: Ctx; execId: string; opts: ExecProcessOptions }> {
    if (this.stopping) throw new BerthError(ErrorCode.Unavailable, "the daemon is stopping");
    checkRequest(req);
    const c = this.d.projector.model.byId(this.d.projector.model.idOf(req.id))!;
    if (c.node !== this.d.node) {
      // Forwarding to the owning node comes with multi-node support.
      throw conflict(`container ${c.name} runs on node ${c.node}; exec reaches only this node's (${this.d.node}) containers for now`);
    }
    checkRunning(c);
    const user = req.user ? await this.d.host.resolveUser(c.id, req.user) : undefined;
    const ctx = ctxFromMeta(this.d.node, meta, "anonymous");
    ctx.requestId ??= randomUUID();
    const execId = eventIdFor(ctx, "exec");
    await this.d.commands.appendDecided(
      c.id,
      (s) => {
        if (!s) throw notFound(`no container '${req.id}'`);
        checkRunning(s);
        return [{ type: "ContainerExecStarted", data: { execId, cmd: [...req.cmd], user: req.user ?? "" } }];
      },
      ctx,
      "ContainerExecStarted",
    );
    log.info({ container: c.id, name: c.name, execId, actor: ctx.actor, argv0: req.cmd[0] }, "exec started");
    return { c, ctx, execId, opts: { env: req.env, user, cwd: req.workdir } };
  }

  /** ContainerExecExited, retried while the log is unreachable (for a minute at most). */
  private async end(id: string, execId: string, exitCode: number, ctx: Ctx): Promise<void> {
    const deadline = Date.now() + 60_000;
    try {
      await this.d.commands.appendFact(
        id,
        // A container removed meanwhile has no history left to add to.
        (s) => (s && nextState(s.state, "ContainerExecExited") ? [{ type: "ContainerExecExited", data: { execId, exitCode } }] : []),
        ctx,
        "ContainerExecExited",
        () => Date.now() > deadline,
      );
      log.info({ container: id, execId, exitCode }, "exec exited");
    } catch (err) {
      log.error({ err, container: id, execId, exitCode }, "could not record the end of an exec");
    }
  }

}

function checkRunning(c: ContainerState): void {
  if (c.state === "running") return;
  const hint = c.state === "paused" ? ": unpause it first" : ": start it first";
  throw conflict(`cannot exec in container ${c.name}: it is ${c.state}${hint}`);
}

/** The rules the schema cannot say (the terminal route shares them). */
export function checkRequest(req: ExecRequest): void {
  if (!Array.isArray(req.cmd) || req.cmd.length === 0) throw invalid("cmd must name a program to run");
  if (req.cmd.some((a) => a.includes("\0"))) throw invalid("cmd arguments must not contain NUL");
  if (req.cmd[0] === "") throw invalid("cmd must name a program to run");
  for (const e of req.env ?? []) {
    if (!ENV_RE.test(e)) throw invalid(`invalid env entry '${e.slice(0, 64)}': expected KEY=VALUE`);
  }
  if (req.workdir !== undefined && (!req.workdir.startsWith("/") || req.workdir.includes("\0"))) {
    throw invalid(`workdir '${req.workdir.slice(0, 64)}' must be an absolute path`);
  }
}

function exitOf(r: ExecResult): number {
  return r.timedOut ? EXEC_KILLED_EXIT : r.exitCode;
}

/**
 * Cut stdout and stderr so that both, JSON-encoded, take at most `budget` bytes. JSON escapes
 * make control bytes longer, so the cut is measured, not guessed; the longer stream gives first.
 */
export function fitOutput(stdout: string, stderr: string, budget: number): { stdout: string; stderr: string; cut: boolean } {
  const size = (s: string) => Buffer.byteLength(JSON.stringify(s));
  let out = stdout;
  let err = stderr;
  let cut = false;
  for (let i = 0; i < 64 && size(out) + size(err) > budget; i++) {
    cut = true;
    const over = size(out) + size(err) - budget;
    const [big, bigSize] = size(out) >= size(err) ? ["out", size(out)] : ["err", size(err)];
    const s = big === "out" ? out : err;
    // Characters to drop, scaled by this string's bytes per character, and at least one.
    const drop = Math.max(1, Math.ceil((over / bigSize) * s.length));
    const next = s.slice(0, Math.max(0, s.length - drop));
    if (big === "out") out = next;
    else err = next;
  }
  return { stdout: out, stderr: err, cut };
}
