// A container's own terminal on the real stack (conmon -t, its attach socket, runc's console):
// `berth run -it --rm busybox sh` driven through a real pty (the prompt, input, window size, the
// exit status, the container gone), `berth start -a`, and the attach route's refusals.
import { resolve } from "node:path";
import { execa } from "execa";
import type { IPty } from "node-pty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { BUILT } from "../support/daemon-proc.js";
import { IN_CI, missing } from "../support/prereq.js";
import { until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const CLI = resolve(__dirname, "../../dist/cli/main.js");

type View = { id: string; name: string; state: string; exitCode: number | null };

describe.skipIf(skip)("attach to a container's terminal on the real stack", () => {
  let d: TestDaemon;
  const tag = `${process.pid}-${Date.now() % 100000}`;
  const berth = (...args: string[]) => execa(process.execPath, [CLI, "--data-root", d.dataRoot, ...args], { reject: false, stripFinalNewline: false });
  const all = async () => (await d.get<{ containers: View[] }>("/v1/containers?all=true")).containers;

  /** The CLI on a pty of ours, with a screen to read and keys to type. */
  async function onPty(args: string[], size = { cols: 80, rows: 24 }) {
    const pty = (await import("node-pty")).default;
    const p: IPty = pty.spawn(process.execPath, [CLI, "--data-root", d.dataRoot, ...args], { name: "xterm", ...size, env: process.env as Record<string, string> });
    let screen = "";
    p.onData((s) => (screen += s));
    const exited = new Promise<number>((r) => p.onExit((e) => r(e.exitCode)));
    const see = (re: RegExp, from = 0) =>
      until(async () => re.test(screen.slice(from)), 20_000).catch((err) => {
        throw new Error(`${(err as Error).message}: ${re} not on the screen: ${JSON.stringify(screen.slice(from))}`);
      });
    const kill = () => {
      try {
        p.kill("SIGKILL");
      } catch {
        /* exited */
      }
    };
    return { p, exited, see, kill, screen: () => screen };
  }

  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d?.destroy();
  });

  it("berth run -it --rm busybox sh: the prompt, input, window size, the exit status, and the container gone", async () => {
    const name = `tty-${tag}`;
    const t = await onPty(["run", "-it", "--rm", "--name", name, "busybox:latest", "sh"]);
    try {
      // The very first output: the shell's prompt (printed before any client could attach after the start).
      await t.see(/\/ # /);
      const c = (await all()).find((x) => x.name === name)!;
      expect(c.state).toBe("running");
      t.p.write("echo hi-$((6*7))\r");
      await t.see(/^hi-42\r*$/m);
      let mark = t.screen().length;
      t.p.write("stty size\r");
      await t.see(/^24 80\r*$/m, mark);
      t.p.resize(132, 43);
      // SIGWINCH in the CLI → a resize frame → conmon's ctl fifo → the container's terminal.
      await until(async () => {
        mark = t.screen().length;
        t.p.write("stty size\r");
        await new Promise((r) => setTimeout(r, 500));
        return /^43 132\r*$/m.test(t.screen().slice(mark));
      }, 20_000);
      t.p.write("exit 3\r");
      expect(await t.exited).toBe(3);
      // --rm: gone once the CLI has returned.
      expect((await all()).some((x) => x.name === name)).toBe(false);
      const r = await d.http(`/v1/containers/${c.id}`);
      expect(r.status).toBe(404);
    } finally {
      t.kill();
    }
  });

  it("the run's first output is not lost; without --rm the container stays exited; start -a runs it again", async () => {
    const name = `tty2-${tag}`;
    // Printed once, at once, and the process lives on: a client attached after the start would
    // miss it (a shell's prompt would not tell: busybox redraws it on the attach's resize).
    const t = await onPty(["run", "-it", "--name", name, "busybox:latest", "sh", "-c", "echo first-$((2+3)); sleep 1; exit 7"]);
    try {
      await t.see(/first-5/);
      expect(await t.exited).toBe(7);
    } finally {
      t.kill();
    }
    await until(async () => (await all()).find((x) => x.name === name)?.state === "exited", 10_000);
    expect((await all()).find((x) => x.name === name)?.exitCode).toBe(7);
    const again = await onPty(["start", "-ai", name]);
    try {
      await again.see(/first-5/);
      expect(await again.exited).toBe(7);
    } finally {
      again.kill();
    }
  });

  it("refuses an unknown container, one without a terminal, a stopped one; attach needs the token", async () => {
    const unknown = await berth("attach", `no-such-${tag}`);
    expect(unknown.exitCode).toBe(1);
    expect(unknown.stderr).toMatch(/^berth: NotFound: /);

    const plain = await d.cmd<{ id: string }>("container.run", { image: "busybox", name: `plain-${tag}`, cmd: ["sleep", "1000"], stopTimeoutSec: 0 });
    expect(plain.error).toBeUndefined();
    const before = (await d.get<{ events: unknown[] }>(`/v1/containers/${plain.result!.id}/events`)).events.length;
    const noTty = await berth("attach", `plain-${tag}`);
    expect(noTty.exitCode).toBe(1);
    expect(noTty.stderr).toMatch(/^berth: InvalidArgument: .*no terminal/);
    const noTtyStart = await berth("start", "-a", `plain-${tag}`);
    expect(noTtyStart.stderr).toMatch(/^berth: InvalidArgument: .*no terminal/);
    // Nothing was recorded for the refusals.
    expect((await d.get<{ events: unknown[] }>(`/v1/containers/${plain.result!.id}/events`)).events.length).toBe(before);

    const created = await d.cmd<{ id: string }>("container.create", { image: "busybox", name: `stopped-${tag}`, cmd: ["sh"], tty: true, stdin: true });
    expect(created.error).toBeUndefined();
    const stopped = await berth("attach", `stopped-${tag}`);
    expect(stopped.exitCode).toBe(1);
    expect(stopped.stderr).toMatch(/^berth: Conflict: .*it is created/);
    expect((await d.get<View>(`/v1/containers/${created.result!.id}`)).state).toBe("created");

    // stdin without a terminal is refused at create.
    const bad = await d.cmd("container.create", { image: "busybox", cmd: ["sh"], stdin: true });
    expect(bad.error?.code).toBe("InvalidArgument");

    const { WebSocket } = await import("ws");
    const url = d.client.http.url.replace(/^http/, "ws") + `/v1/containers/${created.result!.id}/attach`;
    const status = await new Promise<number>((r) => {
      const ws = new WebSocket(url);
      ws.on("unexpected-response", (_q, res) => r(res.statusCode ?? 0));
      ws.on("open", () => r(101));
      ws.on("error", () => undefined);
    });
    expect(status).toBe(401);
  });
});
