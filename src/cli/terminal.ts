// A terminal session over one of the HTTP API's WebSocket routes (exec, attach; docs/API.md):
// raw mode on our terminal, keystrokes and window sizes to the daemon, the terminal's bytes back,
// until the daemon's `exit` frame. `ws` is loaded only here, so plain verbs do not pay for it.
import { randomUUID } from "node:crypto";
import { actor, CliError, type Client } from "./client.js";

export interface TerminalRoute {
  /** `/v1/containers/<ref>/exec` or `/attach`. */
  route: string;
  /** For messages: "exec", "attach". */
  what: string;
  /** The server's go-ahead frame: input flows only after it. */
  ready: string;
  /** The first frame; the window size and meta are added here. */
  first: Record<string, unknown>;
  /** Called with the go-ahead frame (e.g. the container's id). */
  onReady?: (frame: Record<string, unknown>) => void;
}

/** A terminal session; resolves with the process's exit status. */
export async function terminal(client: Client, t: TerminalRoute): Promise<number> {
  const { WebSocket } = await import("ws");
  const base = client.cfg.http.url.replace(/\/$/, "").replace(/^http/, "ws");
  const ws = new WebSocket(`${base}${t.route}`, {
    headers: { authorization: `Bearer ${client.cfg.http.token}` },
  });
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  let raw = false;
  let exitCode = null as number | null;
  let failure = null as CliError | null;

  const onInput = (b: Buffer) => ws.readyState === ws.OPEN && ws.send(b, { binary: true });
  const onResize = () => ws.readyState === ws.OPEN && ws.send(JSON.stringify({ type: "resize", ...size() }));
  const restore = () => {
    stdin.off("data", onInput);
    stdout.off("resize", onResize);
    if (raw) stdin.setRawMode(false);
    raw = false;
    stdin.pause();
  };

  try {
    await new Promise<void>((resolve) => {
      ws.on("unexpected-response", (_req, res) => {
        let text = "";
        res.on("data", (c: Buffer) => (text += c.toString()));
        res.on("end", () => {
          let e: { code?: string; message?: string } | undefined;
          try {
            e = (JSON.parse(text) as { error?: typeof e }).error;
          } catch {
            /* not ours */
          }
          failure = new CliError(e?.code ?? `HTTP${res.statusCode}`, e?.message ?? `${res.statusCode} from the ${t.what} route`);
          resolve();
        });
      });
      ws.on("error", (err) => {
        failure ??= new CliError("Unavailable", `cannot reach ${client.cfg.http.url}: ${err.message} (is the daemon running?)`);
        resolve();
      });
      ws.on("open", () => {
        ws.send(JSON.stringify({ ...t.first, ...size(), meta: { actor: actor(), requestId: randomUUID() } }));
      });
      ws.on("message", (data, isBinary) => {
        if (isBinary) return void stdout.write(data as Buffer);
        const msg = JSON.parse(data.toString()) as { type: string; exitCode?: number; code?: string; message?: string };
        if (msg.type === t.ready) {
          t.onReady?.(msg);
          // Only now: keystrokes typed before the process exists would be lost, or mistaken for a frame.
          if (stdin.isTTY) {
            stdin.setRawMode(true);
            raw = true;
          }
          stdin.on("data", onInput);
          stdin.resume();
          stdout.on("resize", onResize);
        } else if (msg.type === "exit") exitCode = msg.exitCode ?? 0;
        else if (msg.type === "error") failure = new CliError(msg.code ?? "Internal", msg.message ?? "the daemon gave no reason");
      });
      ws.on("close", () => resolve());
    });
  } finally {
    restore();
  }
  if (failure) throw failure;
  if (exitCode === null) throw new CliError("Unavailable", `the ${t.what} session broke off before the process ended`);
  return exitCode < 0 ? 126 : exitCode & 255;
}
