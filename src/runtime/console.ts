// A container's terminal, reached through conmon: conmon (started with -t) holds the pty master
// runc gave it and serves it on `<socketDir>/<id>/attach`, a SOCK_SEQPACKET socket. Each packet
// from conmon is one read of the terminal with a 1-byte stream prefix (conmon's STDOUT_PIPE or
// STDERR_PIPE: the same terminal either way); what a client writes is the terminal's input.
// Window sizes go through conmon's control fifo (`1 <rows> <cols>\n`). Detaching is closing the
// socket: with --leave-stdin-open, conmon keeps the terminal's input open for the next client.
//
// The start of a run: the host connects one client between `runc create` and `runc start` and
// holds it (hold()), buffering, so that the first attach of the run sees the very first bytes (a
// shell's prompt) however late it comes, as podman does by attaching before it starts. A hold
// nobody claims within HOLD_MS is let go; later clients see output from when they attach.
//
// node-unix-socket: Node's `net` cannot open SOCK_SEQPACKET, and the packets' boundaries carry the
// prefix (a stream relay such as socat would lose them). Loaded on the first terminal only.
import type { SeqpacketSocket } from "node-unix-socket";
import { RuntimeFailure } from "../shared/errors.js";
import type { ConsoleSession } from "../shared/host-facts.js";
import { sendConmonCtl } from "./log-files.js";

/** An unclaimed hold is dropped after this: its run has no first client coming. */
export const HOLD_MS = 60_000;
/** Output kept for a client not listening yet; beyond it the oldest goes (the log has it all). */
export const HOLD_MAX_BYTES = 1024 * 1024;
/** conmon reads a client's packet into 32 KiB (CONN_SOCK_BUF_SIZE) less one byte; stay well below. */
const INPUT_PACKET = 8192;
const CONNECT_MS = 5_000;

type Mod = typeof import("node-unix-socket");
let loaded: Promise<Mod> | null = null;
const seqpacket = () => (loaded ??= import("node-unix-socket").then((m) => ((m as { default?: Mod }).default ?? m) as Mod));

/** One client connection to conmon's attach socket. */
class Console implements ConsoleSession {
  private listener: ((b: Buffer) => void) | null = null;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private done!: () => void;
  readonly ended = new Promise<void>((r) => (this.done = r));

  constructor(
    private readonly sock: SeqpacketSocket,
    private readonly ctlFifo: string,
  ) {
    sock.on("data", (packet: Buffer) => {
      if (packet.length <= 1) return;
      const bytes = packet.subarray(1);
      if (this.listener) return this.listener(bytes);
      this.buffered.push(bytes);
      this.bufferedBytes += bytes.length;
      while (this.bufferedBytes > HOLD_MAX_BYTES && this.buffered.length > 1) this.bufferedBytes -= this.buffered.shift()!.length;
    });
    // conmon closes its clients when the container has exited and its output is drained.
    sock.on("end", () => this.done());
    sock.on("close", () => this.done());
    sock.on("error", () => this.done());
  }

  onData(cb: (b: Buffer) => void): void {
    this.listener = cb;
    const held = this.buffered;
    this.buffered = [];
    this.bufferedBytes = 0;
    for (const b of held) cb(b);
  }

  write(data: Buffer): void {
    for (let i = 0; i < data.length; i += INPUT_PACKET) {
      try {
        this.sock.write(data.subarray(i, i + INPUT_PACKET));
      } catch {
        return; // closed meanwhile: the terminal is gone
      }
    }
  }

  async resize(cols: number, rows: number): Promise<void> {
    await sendConmonCtl(this.ctlFifo, `1 ${rows} ${cols}\n`).catch(() => false);
  }

  detach(): void {
    try {
      this.sock.destroy();
    } catch {
      /* closed */
    }
    this.done();
  }
}

async function connect(socketPath: string, ctlFifo: string): Promise<Console> {
  const { SeqpacketSocket } = await seqpacket();
  const sock = new SeqpacketSocket();
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string) => reject(new RuntimeFailure("conmon", ["attach", socketPath], why, undefined));
    const timer = setTimeout(() => {
      sock.destroy();
      fail(`no answer on the attach socket within ${CONNECT_MS} ms`);
    }, CONNECT_MS);
    sock.once("error", (err: Error) => {
      clearTimeout(timer);
      fail(err.message);
    });
    try {
      sock.connect(socketPath, () => {
        clearTimeout(timer);
        resolve();
      });
    } catch (err) {
      clearTimeout(timer);
      fail((err as Error).message);
    }
  });
  const c = new Console(sock, ctlFifo);
  // A terminal someone holds must not keep the daemon alive at its shutdown.
  sock.unref();
  return c;
}

/** The holds of this daemon's containers' runs, and new clients for the rest. */
export class ConsoleHub {
  private readonly held = new Map<string, { console: Console; timer: NodeJS.Timeout }>();

  /** Connect the first client of a run (before `runc start`) and keep its output for attach(). */
  async hold(id: string, socketPath: string, ctlFifo: string): Promise<void> {
    this.release(id);
    const console = await connect(socketPath, ctlFifo);
    const timer = setTimeout(() => this.release(id), HOLD_MS);
    timer.unref();
    this.held.set(id, { console, timer });
  }

  /** A client of the container's terminal: the run's hold when nobody claimed it yet, else a new one. */
  async attach(id: string, socketPath: string, ctlFifo: string): Promise<ConsoleSession> {
    const h = this.held.get(id);
    if (h) {
      clearTimeout(h.timer);
      this.held.delete(id);
      return h.console;
    }
    return connect(socketPath, ctlFifo);
  }

  /** Let go of an unclaimed hold (a new run, the container's removal). */
  release(id: string): void {
    const h = this.held.get(id);
    if (!h) return;
    clearTimeout(h.timer);
    this.held.delete(id);
    h.console.detach();
  }
}
