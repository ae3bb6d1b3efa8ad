// The daemon in the foreground on a terminal (a real pty, through script(1)) prints readable log
// lines; into a pipe it prints JSON lines.
import { randomBytes } from "node:crypto";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { Paths } from "../../src/runtime/paths.js";
import { freePort } from "../support/nats.js";
import { BUILT } from "../support/daemon-proc.js";
import { IN_CI, missing } from "../support/prereq.js";

const DAEMON = resolve(__dirname, "../../dist/daemon-main.js");
const LOG = resolve(__dirname, "../../dist/log.js");
if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const noScript = !existsSync("/usr/bin/script");
if (noScript && IN_CI) throw new Error("script(1) (util-linux) is missing");
const skip = !BUILT || noScript || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const JSON_LINE = /^\{"level":\d+,/;

describe.skipIf(skip)("daemon log lines", () => {
  const roots: string[] = [];
  afterAll(async () => {
    for (const r of roots) {
      await rm(r, { recursive: true, force: true });
      await rm(new Paths(r).socketDir, { recursive: true, force: true });
    }
  });

  it("on a terminal: readable lines, no JSON", async () => {
    const dataRoot = await mkdtemp(join(tmpdir(), "berth-logfmt-"));
    roots.push(dataRoot);
    const node = `logfmt${randomBytes(3).toString("hex")}`;
    const cmd = [process.execPath, DAEMON, "--data-root", dataRoot, "--node", node, "--nats-port", String(await freePort()), "--http-listen", "127.0.0.1:0"];
    // script(1) gives the daemon a pty for stdout; the test reads what the terminal shows.
    const child: ChildProcess = spawn("script", ["-qefc", cmd.join(" "), "/dev/null"], {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, BERTH_LOG_LEVEL: "info", BERTH_LOG_FORMAT: "" },
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    let shown = "";
    child.stdout!.on("data", (b: Buffer) => (shown += b.toString()));
    const end = Date.now() + 30_000;
    while (!shown.includes("berth daemon ready") && Date.now() < end && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    // The daemon's own pid (script's child), from its lock file: stop exactly that process.
    const pid = Number(readFileSync(join(dataRoot, "berth.pid"), "utf8").trim().split(" ")[0]);
    process.kill(pid, "SIGTERM");
    expect(await exited).toBe(0);
    const lines = shown.replace(/\x1b\[[0-9;]*m/g, "").split(/\r?\n/).filter(Boolean);
    const ready = lines.find((l) => l.includes("berth daemon ready"));
    expect(ready, shown).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: daemon: berth daemon ready/);
    expect(lines.some((l) => l.includes("berth daemon stopped"))).toBe(true);
    expect(lines.filter((l) => JSON_LINE.test(l))).toEqual([]);
  });

  it("into a pipe: JSON lines", async () => {
    const r = await execa(process.execPath, ["--input-type=module", "-e", `import { logger } from ${JSON.stringify(LOG)}; logger("daemon").info({ n: 1 }, "piped")`], {
      env: { BERTH_LOG_LEVEL: "info", BERTH_LOG_FORMAT: "" },
    });
    expect(r.stdout).toMatch(JSON_LINE);
    expect(JSON.parse(r.stdout)).toMatchObject({ mod: "daemon", n: 1, msg: "piped" });
  });
});
