// `container.exec` and `berth exec` on the real stack: runc exec in a running container, output
// bounded, the session audited (ContainerExecStarted / ContainerExecExited with the actor), the
// CLI exiting with the process's status, and `berth exec -it` driven through a real pty.
import { readFileSync, readdirSync } from "node:fs";
import { resolve } from "node:path";
import { execa } from "execa";
import type { IPty } from "node-pty";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { startNats } from "../support/nats.js";
import { BUILT } from "../support/daemon-proc.js";
import { IN_CI, missing } from "../support/prereq.js";
import { until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const CLI = resolve(__dirname, "../../dist/cli/main.js");

type Ev = { type: string; actor: string; data: Record<string, unknown> };
type ExecReply = { execId: string; exitCode: number; stdout: string; stderr: string; truncated: boolean; timedOut: boolean };

/** Host processes (not zombies) whose argv is exactly `argv`. */
function processesWith(argv: string[]): number[] {
  const want = argv.join("\0") + "\0";
  return readdirSync("/proc").filter((p) => {
    if (!/^\d+$/.test(p)) return false;
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8") === want;
    } catch {
      return false;
    }
  }).map(Number);
}

describe.skipIf(skip)("exec on the real stack", () => {
  let d: TestDaemon;
  let web: string;
  const events = async (id: string) => (await d.get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events;
  const execs = async (id: string) => (await events(id)).filter((e) => e.type.startsWith("ContainerExec"));
  const exec = (body: Record<string, unknown>) => d.cmd<ExecReply>("container.exec", { id: web, meta: { actor: "alice" }, ...body });
  const berth = (...args: string[]) => execa(process.execPath, [CLI, "--data-root", d.dataRoot, ...args], { reject: false, stripFinalNewline: false });

  beforeAll(async () => {
    d = await startTestDaemon();
    const r = await d.cmd<{ id: string }>("container.run", { image: "busybox", name: `web${Date.now() % 100000}`, cmd: ["sleep", "1000"], stopTimeoutSec: 1 });
    expect(r.error).toBeUndefined();
    web = r.result!.id;
  });
  afterAll(async () => {
    await d?.destroy();
  });

  it("runs a command and replies with its exit code and each stream, audited with the actor", async () => {
    const before = await d.get<{ version: number; state: string; pid: number }>(`/v1/containers/${web}`);
    const r = await exec({ cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"] });
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ exitCode: 3, stdout: "out\n", stderr: "err\n", truncated: false, timedOut: false });
    const evs = await execs(web);
    expect(evs.map((e) => [e.type, e.actor])).toEqual([["ContainerExecStarted", "alice"], ["ContainerExecExited", "alice"]]);
    expect(evs[0].data).toEqual({ execId: r.result!.execId, cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"], user: "" });
    expect(evs[1].data).toEqual({ execId: r.result!.execId, exitCode: 3 });
    // Audit facts only: the container's state is as it was.
    const after = await d.get<{ version: number; state: string; pid: number }>(`/v1/containers/${web}`);
    expect(after).toMatchObject({ state: "running", pid: before.pid });
    expect(after.version).toBeGreaterThan(before.version);
  });

  it("takes env, workdir and a user name from the container's /etc/passwd and /etc/group", async () => {
    const add = await exec({ cmd: ["sh", "-c", "echo 'berthu:x:4321:4000::/:/bin/sh' >> /etc/passwd; echo 'berthg:x:4000:' >> /etc/group; echo 'extra:x:4500:berthu' >> /etc/group"] });
    expect(add.result?.exitCode).toBe(0);
    const r = await exec({ cmd: ["sh", "-c", "echo $FOO; id -u; id -g; id -G; pwd"], env: ["FOO=bar baz"], workdir: "/tmp", user: "berthu" });
    expect(r.result).toMatchObject({ exitCode: 0, stdout: "bar baz\n4321\n4000\n4000 4500\n/tmp\n" });
    const numeric = await exec({ cmd: ["sh", "-c", "id -u; id -g"], user: "77:88" });
    expect(numeric.result?.stdout).toBe("77\n88\n");
    const group = await exec({ cmd: ["id", "-g"], user: "0:berthg" });
    expect(group.result?.stdout).toBe("4000\n");
    // An argument that looks like a flag is the command's, not runc's.
    const dash = await exec({ cmd: ["echo", "--help", "-t"] });
    expect(dash.result?.stdout).toBe("--help -t\n");
    expect((await execs(web)).filter((e) => e.type === "ContainerExecStarted").at(-3)?.data.user).toBe("77:88");
  });

  it("bounds the output and says it was cut; the reply fits NATS's max_payload", async () => {
    const r = await exec({ cmd: ["sh", "-c", "yes 0123456789 | head -c 3000000; yes e | head -c 300000 >&2"] });
    expect(r.error).toBeUndefined();
    expect(r.result!.truncated).toBe(true);
    expect(r.result!.exitCode).toBe(0);
    // Cut to what fits, not far below: both streams as JSON take 0.9–1 MiB.
    const json = JSON.stringify(r.result!.stdout).length + JSON.stringify(r.result!.stderr).length;
    expect(json).toBeGreaterThan(900_000);
    expect(json).toBeLessThanOrEqual(1024 * 1024);
    expect(r.result!.stdout.startsWith("0123456789\n0123456789\n")).toBe(true);
  });

  it("kills the command and what it started at its timeout, and records 137", async () => {
    const t0 = Date.now();
    const r = await exec({ cmd: ["sh", "-c", "sleep 71.5 & sleep 72.5"], timeoutSec: 1 });
    expect(r.result).toMatchObject({ exitCode: 137, timedOut: true });
    expect(Date.now() - t0).toBeLessThan(8_000);
    await until(async () => processesWith(["sleep", "71.5"]).length + processesWith(["sleep", "72.5"]).length === 0, 5_000);
    expect((await execs(web)).at(-1)).toMatchObject({ type: "ContainerExecExited", data: { exitCode: 137 } });
  });

  describe("bad input: a clear error, nothing in the log, no process", () => {
    const unchanged = async (id: string, f: () => Promise<{ error?: { code: string; message: string } }>, code: string, re: RegExp) => {
      const before = await events(id);
      const r = await f();
      expect(r.error?.code).toBe(code);
      expect(r.error?.message).toMatch(re);
      expect(await events(id)).toEqual(before);
      expect(processesWith(["sleep", "93.5"])).toEqual([]);
    };

    it("a stopped or paused container is Conflict, an unknown one NotFound", async () => {
      const s = await d.cmd<{ id: string }>("container.run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 0 });
      const id = s.result!.id;
      expect((await d.cmd("container.pause", { id })).error).toBeUndefined();
      await unchanged(id, () => d.cmd("container.exec", { id, cmd: ["sleep", "93.5"] }), "Conflict", /paused: unpause it first/);
      expect((await d.cmd("container.unpause", { id })).error).toBeUndefined();
      expect((await d.cmd("container.stop", { id, timeoutSec: 0 })).error).toBeUndefined();
      await unchanged(id, () => d.cmd("container.exec", { id, cmd: ["sleep", "93.5"] }), "Conflict", /it is exited/);
      const none = await d.cmd("container.exec", { id: "no-such-container", cmd: ["true"] });
      expect(none.error).toMatchObject({ code: "NotFound" });
      expect((await d.cmd("container.remove", { id, force: true })).error).toBeUndefined();
    });

    it.each([
      ["an empty cmd", { cmd: [] }, /cmd/],
      ["an empty program", { cmd: [""] }, /cmd must name/],
      ["a 1 MB argument", { cmd: ["echo", "x".repeat(1_000_000)] }, /exceeds/],
      ["an unknown user", { cmd: ["sleep", "93.5"], user: "no-such-user" }, /no user 'no-such-user' in the container's \/etc\/passwd/],
      ["an unknown group", { cmd: ["sleep", "93.5"], user: "root:no-such-group" }, /no group/],
      ["an env entry without =", { cmd: ["sleep", "93.5"], env: ["NOVALUE"] }, /env/],
      ["an env entry with an empty key", { cmd: ["sleep", "93.5"], env: ["=v"] }, /env/],
      ["an env entry with NUL", { cmd: ["sleep", "93.5"], env: ["K=a\u0000b"] }, /env/],
      ["a relative workdir", { cmd: ["sleep", "93.5"], workdir: "tmp" }, /workdir/],
      ["an unknown field", { cmd: ["sleep", "93.5"], tty: true }, /unknown field 'tty'/],
    ])("%s is InvalidArgument", async (_what, body, re) => {
      await unchanged(web, () => d.cmd("container.exec", { id: web, ...body }), "InvalidArgument", re);
    });
  });

  describe("the CLI", () => {
    it("berth exec prints each stream to its own and exits with the process's status", async () => {
      const r = await berth("exec", "-e", "GREETING=hi", "-w", "/etc", web.slice(0, 12), "sh", "-c", "echo $GREETING $(pwd); echo oops >&2; exit 5");
      expect(r).toMatchObject({ exitCode: 5, stdout: "hi /etc\n", stderr: "oops\n" });
      const ok = await berth("exec", "-u", "berthu", web, "id", "-un");
      expect(ok).toMatchObject({ exitCode: 0, stdout: "berthu\n" });
      const bad = await berth("exec", web, "sh", "-c", "exit 0", "--user", "x");
      expect(bad.exitCode).toBe(0); // options after the command are the command's
      const unknown = await berth("exec", "nope-nope", "true");
      expect(unknown.exitCode).toBe(1);
      expect(unknown.stderr).toMatch(/^berth: NotFound: /);
      const actor = (await execs(web)).filter((e) => e.type === "ContainerExecStarted").at(-1)!.actor;
      expect(actor).toMatch(/^cli:/);
    });

    it("berth exec -it gives a real terminal: input, output, window size, exit status", async () => {
      const pty = (await import("node-pty")).default;
      const p: IPty = pty.spawn(process.execPath, [CLI, "--data-root", d.dataRoot, "exec", "-it", web, "sh"], {
        name: "xterm", cols: 80, rows: 24, env: process.env as Record<string, string>,
      });
      let screen = "";
      p.onData((s) => (screen += s));
      const exited = new Promise<number>((r) => p.onExit((e) => r(e.exitCode)));
      const see = (re: RegExp, from = 0) =>
        until(async () => re.test(screen.slice(from)), 15_000).catch((err) => {
          throw new Error(`${(err as Error).message}: ${re} not on the screen: ${JSON.stringify(screen.slice(from))}`);
        });
      try {
        await see(/\/ # /); // the container's shell prompt
        p.write("echo $((6*7))\r");
        // Each line ends in \r\r\n: the container's terminal and ours both translate newlines.
        await see(/^42\r*$/m);
        let mark = screen.length;
        p.write("stty size\r");
        await see(/^24 80\r*$/m, mark);
        p.resize(132, 43);
        // The CLI passes the resize on (SIGWINCH → a resize frame → the daemon's pty → runc →
        // the container's terminal); ask until stty sees it, a loaded machine may take a while.
        await until(async () => {
          mark = screen.length;
          p.write("stty size\r");
          await new Promise((r) => setTimeout(r, 500));
          return /^43 132\r*$/m.test(screen.slice(mark));
        }, 15_000);
        p.write("exit 3\r");
        expect(await exited).toBe(3);
      } finally {
        try {
          p.kill("SIGKILL");
        } catch {
          /* exited */
        }
      }
      const evs = await execs(web);
      const started = evs.filter((e) => e.type === "ContainerExecStarted").at(-1)!;
      expect(started.data.cmd).toEqual(["sh"]);
      expect(started.actor).toMatch(/^cli:/);
      await until(async () => (await execs(web)).at(-1)?.type === "ContainerExecExited", 5_000);
      expect((await execs(web)).at(-1)!.data).toEqual({ execId: started.data.execId, exitCode: 3 });
    });

    it("a terminal client that goes away takes its process with it, and the end is recorded", async () => {
      const pty = (await import("node-pty")).default;
      const p: IPty = pty.spawn(process.execPath, [CLI, "--data-root", d.dataRoot, "exec", "-it", web, "sh", "-c", "sleep 94.5 & sleep 95.5"], {
        name: "xterm", cols: 80, rows: 24, env: process.env as Record<string, string>,
      });
      const exited = new Promise<void>((r) => p.onExit(() => r()));
      await until(async () => processesWith(["sleep", "95.5"]).length > 0, 15_000);
      p.kill("SIGKILL");
      await exited;
      await until(async () => processesWith(["sleep", "94.5"]).length + processesWith(["sleep", "95.5"]).length === 0, 10_000);
      await until(async () => (await execs(web)).at(-1)?.type === "ContainerExecExited", 10_000);
      expect((await d.get<{ state: string }>(`/v1/containers/${web}`)).state).toBe("running");
    });

    it("the terminal route needs the bearer token and a running container", async () => {
      const { WebSocket } = await import("ws");
      const url = d.client.http.url.replace(/^http/, "ws") + `/v1/containers/${web}/exec`;
      const status = await new Promise<number>((r) => {
        const ws = new WebSocket(url);
        ws.on("unexpected-response", (_q, res) => r(res.statusCode ?? 0));
        ws.on("open", () => r(101));
        ws.on("error", () => undefined);
      });
      expect(status).toBe(401);
      const r = await berth("exec", "-it", "no-such-container", "sh");
      expect(r.exitCode).toBe(1);
      expect(r.stderr).toMatch(/^berth: NotFound: /);
    });
  });
});

describe.skipIf(skip)("exec on two nodes sharing one NATS", () => {
  it("only the owning node runs an exec; with its daemon down, another node answers Unavailable and records nothing", async () => {
    const nats = await startNats();
    const ds: TestDaemon[] = [];
    try {
      const a = await startTestDaemon({ natsUrl: nats.url });
      ds.push(a);
      const b = await startTestDaemon({ natsUrl: nats.url });
      ds.push(b);
      // Either daemon may take the request (one queue group): the spec names the owner.
      const r = await a.cmd<{ id: string }>("container.run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 0, node: a.node });
      const id = r.result!.id;
      // With a's daemon stopped (its container runs on), only b answers commands.
      await a.stop();
      ds.shift();
      const before = (await b.get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events;
      const x = await b.cmd("container.exec", { id, cmd: ["sleep", "93.6"] });
      expect(x.error?.code).toBe("Unavailable");
      expect(x.error?.message).toMatch(new RegExp(`node ${a.node} does not answer`));
      expect((await b.get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events).toEqual(before);
      expect(processesWith(["sleep", "93.6"])).toEqual([]);
      // a again, to remove its container.
      const a2 = await startTestDaemon({ natsUrl: nats.url, dataRoot: a.dataRoot, node: a.node });
      ds.unshift(a2);
    } finally {
      for (const d of ds) await d.destroy();
      await nats.stop();
    }
  });
});
