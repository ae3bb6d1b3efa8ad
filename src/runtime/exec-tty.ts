// `runc exec --tty` in the foreground, inside a pseudo-terminal the daemon makes (node-pty).
// runc then makes the container's own terminal, puts ours in raw mode and copies between the two;
// a window-size change of ours reaches runc as SIGWINCH (the kernel sends it when the pty is
// resized), and runc passes it on. This avoids `--console-socket`, whose fd passing (SCM_RIGHTS)
// plain Node cannot receive.
import { rm } from "node:fs/promises";
import type { IPty } from "node-pty";
import { toolEnv } from "./exec.js";
import { Runc, type ExecUser } from "./runc.js";
import type { TtyProcess } from "../shared/host-facts.js";

export interface TtyExecOptions {
  env?: readonly string[];
  user?: ExecUser;
  cwd?: string;
  cols: number;
  rows: number;
}

/** The terminal session runc runs under node-pty (the handlers' TtyProcess port). */
export type TtyExec = TtyProcess;

type NodePty = typeof import("node-pty");
let loaded: Promise<NodePty> | null = null;
/** The native addon is loaded on the first terminal exec, not with the daemon. */
const nodePty = () => (loaded ??= import("node-pty").then((m) => ((m as { default?: NodePty }).default ?? m) as NodePty));

export async function execTty(runc: Runc, id: string, argv: readonly string[], o: TtyExecOptions): Promise<TtyExec> {
  const pidFile = await runc.pidFile();
  const args = runc.execArgs(id, argv, { pidFile, tty: true, env: o.env, user: o.user, cwd: o.cwd });
  const pty = await nodePty();
  const p: IPty = pty.spawn(runc.path, args, {
    name: "xterm",
    cols: o.cols,
    rows: o.rows,
    env: toolEnv(),
    // Bytes, not strings: a UTF-8 sequence split across reads must reach the client intact.
    encoding: null,
  });
  let killing: Promise<void> | null = null;
  const exited = new Promise<number>((resolve) => {
    p.onExit(({ exitCode, signal }) => {
      // node-pty reports a signal death as its number; a shell would say 128 + n.
      resolve(signal ? 128 + signal : exitCode);
    });
  }).then(async (code) => {
    // runc's own exit does not end what the command left in its session (e.g. `sleep &`).
    await (killing ??= runc.killExec(id, null, pidFile).catch(() => undefined));
    await rm(pidFile, { force: true });
    return code;
  });
  return {
    onData: (cb) => void p.onData((d) => cb(typeof d === "string" ? Buffer.from(d) : (d as Buffer))),
    write: (d) => p.write(d),
    resize: (cols, rows) => {
      try {
        p.resize(cols, rows);
      } catch {
        /* it has exited meanwhile */
      }
    },
    pause: () => p.pause(),
    resume: () => p.resume(),
    async kill() {
      killing ??= runc.killExec(id, p.pid, pidFile).catch(() => undefined);
      await killing;
      try {
        p.kill("SIGKILL");
      } catch {
        /* gone */
      }
      await exited;
    },
    exited,
  };
}
