// `berth run -it`, `berth start -ai`, `berth attach`: a client on a container's own terminal (the
// main process's, made with `tty` in its spec), on this node. With `start`, the container is
// started first, through the ordinary start command (so the start is an intent and an outcome in
// the log like any other): the host holds the run's first output for the attach that follows
// (runtime/console.ts), so a shell's prompt is not lost. The session ends with the container's
// exit, whose code comes from the log (ContainerExited), also when the container is removed
// right after (`--rm`). Detaching leaves the container running.
import type { Meta } from "../events/types.js";
import { containerSubject } from "../events/types.js";
import { BerthError, ErrorCode, conflict, invalid } from "../shared/errors.js";
import type { Projector } from "../projections/projector.js";
import type { ContainerService } from "./container-service.js";
import type { AttachHost, ConsoleSession } from "./ports.js";

export interface AttachRequest {
  id: string;
  /** Start the container first when it is not running (created or exited). */
  start?: boolean;
  cols: number;
  rows: number;
}

export interface AttachSession {
  containerId: string;
  console: ConsoleSession;
  /** The client's input goes to the terminal (the spec's `stdin`); otherwise it is dropped. */
  stdin: boolean;
  /** The container's exit code, once its end is in the log. */
  exit: Promise<number>;
  /** Detach: the container runs on. */
  close(): void;
}

export interface AttachServiceDeps {
  node: string;
  projector: Projector;
  containers: Pick<ContainerService, "start">;
  host: AttachHost;
}

/** setTimeout's largest delay: a terminal session may last that long. */
const FOREVER_MS = 2 ** 31 - 1;
/** After the terminal closed, the exit is in the log within this (the executor records it). */
const EXIT_RECORDED_MS = 30_000;

export class AttachService {
  private readonly open = new Set<AttachSession>();
  private stopping = false;

  constructor(private readonly d: AttachServiceDeps) {}

  async attach(req: AttachRequest, meta?: Meta): Promise<AttachSession> {
    if (this.stopping) throw new BerthError(ErrorCode.Unavailable, "the daemon is stopping");
    const model = this.d.projector.model;
    const c = model.byId(model.idOf(req.id))!;
    if (c.node !== this.d.node) {
      throw conflict(`container ${c.name} runs on node ${c.node}; attach reaches only this node's (${this.d.node}) containers for now`);
    }
    if (!c.spec.tty) throw invalid(`container ${c.name} has no terminal to attach to: create it with tty (berth run -it)`);
    // Registered before the start: an exit that comes at once is still seen.
    const subject = containerSubject(c.id);
    const exited = this.d.projector.waitFor((e) => e.subject === subject && e.type === "ContainerExited", FOREVER_MS);
    exited.promise.catch(() => undefined);
    let console: ConsoleSession;
    try {
      const live = c.state === "running" || c.state === "paused";
      if (!live && req.start) await this.d.containers.start(c.id, { meta });
      else if (!live) throw conflict(`cannot attach to container ${c.name}: it is ${c.state}; start it with berth start -ai ${c.name}`);
      console = await this.d.host.attach(c.id);
    } catch (err) {
      exited.cancel();
      throw err;
    }
    await console.resize(req.cols, req.rows);
    const exit = (async () => {
      await console.ended;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new BerthError(ErrorCode.Timeout, "the terminal closed and no exit was recorded")), EXIT_RECORDED_MS);
        timer.unref();
      });
      try {
        const e = await Promise.race([exited.promise, timeout]);
        return (e.data as { exitCode: number }).exitCode;
      } finally {
        clearTimeout(timer);
        exited.cancel();
      }
    })();
    exit.catch(() => undefined);
    const session: AttachSession = {
      containerId: c.id,
      console,
      stdin: c.spec.stdin === true,
      exit,
      close: () => {
        this.open.delete(session);
        exited.cancel();
        console.detach();
      },
    };
    this.open.add(session);
    return session;
  }

  /** Daemon shutdown: every client detaches; the containers run on. */
  stop(): void {
    this.stopping = true;
    for (const s of [...this.open]) s.close();
  }
}
