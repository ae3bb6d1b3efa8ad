// Health checks on the real stack: probes run in the container with `runc exec`, status changes
// land in the log as ContainerHealthChanged, onFailure acts through an ordinary intent, and a
// daemon restart resumes probing with the status the log has. Intervals are short; timings are
// asserted loosely.
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { logger } from "../../src/log.js";
import { EXEC_OUTPUT_MAX, Runc } from "../../src/runtime/runc.js";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type C = { id: string; state: string; pid: number | null; exitCode: number | null; health: string; startedAt: string | null };
type Ev = { type: string; eventId: string; seq: number; at: string; node: string; actor: string; causationId: string | null; data: Record<string, unknown> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Host processes (not zombies) whose argv is exactly `argv`. */
function processesWith(argv: string[]): number[] {
  const want = argv.join("\0") + "\0";
  const out: number[] = [];
  for (const p of readdirSync("/proc")) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "utf8") === want) out.push(Number(p));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe.skipIf(skip)("health checks on the real stack", () => {
  let d: TestDaemon;
  let hostDir: string;
  beforeAll(async () => {
    d = await startTestDaemon();
    hostDir = await mkdtemp(join(tmpdir(), "berth-hc-"));
  });
  afterAll(async () => {
    await d?.destroy();
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  });

  const run = async (cmd: string[], healthcheck: Record<string, unknown>, extra: Record<string, unknown> = {}) => {
    const r = await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd, healthcheck, stopTimeoutSec: 1, ...extra });
    expect(r.error).toBeUndefined();
    return r.result!;
  };
  const get = (id: string) => d.get<C>(`/v1/containers/${id}`);
  const events = async (id: string) => (await d.get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events;
  const health = async (id: string) => (await events(id)).filter((e) => e.type === "ContainerHealthChanged");
  const remove = async (id: string) => {
    const r = await d.cmd("container.remove", { id, force: true });
    expect(r.error).toBeUndefined();
  };

  it("runc exec reports the exit code and each stream's output, cut at 4 KiB", async () => {
    const { id } = await run(["sleep", "1000"], { test: ["true"], intervalMs: 60_000 });
    const runc = new Runc({ root: join(d.dataRoot, "runc"), log: logger("test") });
    const both = await runc.exec(id, ["sh", "-c", "echo out; echo err >&2; exit 3"], { timeoutMs: 5_000 });
    expect(both).toMatchObject({ exitCode: 3, timedOut: false });
    expect(both).toMatchObject({ stdout: "out\n", stderr: "err\n", truncated: false });
    const big = await runc.exec(id, ["sh", "-c", "i=0; while [ $i -lt 1000 ]; do echo 0123456789; i=$((i+1)); done"], { timeoutMs: 5_000 });
    expect(big.exitCode).toBe(0);
    expect(big.stdout.length).toBe(EXEC_OUTPUT_MAX);
    expect(big.truncated).toBe(true);
    const missingCmd = await runc.exec(id, ["no-such-command"], { timeoutMs: 5_000 });
    expect(missingCmd.exitCode).not.toBe(0);
    expect(missingCmd.stderr).toContain("no-such-command");

    // A timeout kills the command and everything it started, in the container and on the host.
    const t0 = Date.now();
    const slow = await runc.exec(id, ["sh", "-c", "sleep 77.1 & sleep 66.1"], { timeoutMs: 300 });
    expect(slow).toMatchObject({ exitCode: -1, timedOut: true });
    expect(Date.now() - t0).toBeLessThan(5_000);
    // The command exited but a child holds its output pipe: runc waits for it, and so the timeout.
    const held = await runc.exec(id, ["sh", "-c", "sleep 77.2 & echo started"], { timeoutMs: 500 });
    expect(held).toMatchObject({ exitCode: -1, timedOut: true, stdout: "started\n" });
    await until(async () => [77.1, 66.1, 77.2].every((s) => processesWith(["sleep", String(s)]).length === 0), 5_000);
    expect((await get(id)).state).toBe("running");
    await remove(id);
  });

  it("goes starting → healthy; failures inside the start period do not count", async () => {
    // retries 1: a single counted failure would make it unhealthy.
    const { id } = await run(["sh", "-c", "sleep 0.5; touch /tmp/ok; sleep 1000"], {
      test: ["test", "-f", "/tmp/ok"], intervalMs: 200, timeoutMs: 2_000, retries: 1, startPeriodMs: 20_000,
    });
    expect((await get(id)).health).toBe("starting");
    const c = await until(async () => {
      const c = await get(id);
      return c.health === "healthy" && c;
    }, 15_000);
    const hs = await health(id);
    expect(hs.map((e) => e.data)).toEqual([{ status: "healthy", failingStreak: 0 }]);
    expect(hs[0].actor).toBe(`berth/${d.node}/health`);
    // Not before the file existed (0.5 s after the start), and the first probe waits an interval.
    expect(Date.parse(hs[0].at) - Date.parse(c.startedAt!)).toBeGreaterThanOrEqual(400);
    await remove(id);
  });

  it("goes unhealthy after `retries` failures in a row, once, and onFailure none leaves it running", async () => {
    const { id, pid } = await run(["sleep", "1000"], { test: ["sh", "-c", "echo not ok; exit 1"], intervalMs: 200, retries: 2 });
    const c = await until(async () => {
      const c = await get(id);
      return c.health === "unhealthy" && c;
    }, 15_000);
    await sleep(1_000);
    const hs = await health(id);
    expect(hs.map((e) => e.data)).toEqual([{ status: "unhealthy", failingStreak: 2, output: "not ok\n" }]);
    // Two probes, an interval apart, each an interval after the last.
    expect(Date.parse(hs[0].at) - Date.parse(c.startedAt!)).toBeGreaterThanOrEqual(350);
    expect(await get(id)).toMatchObject({ state: "running", pid, health: "unhealthy" });
    await remove(id);
  });

  it("a probe past its timeout fails, and leaves nothing running", async () => {
    const { id } = await run(["sleep", "1000"], {
      test: ["sh", "-c", "sleep 77.3 & sleep 66.3"], intervalMs: 200, timeoutMs: 300, retries: 1,
    });
    await until(async () => (await get(id)).health === "unhealthy", 15_000);
    const [h] = await health(id);
    expect(h.data).toMatchObject({ status: "unhealthy", failingStreak: 1 });
    expect(String(h.data.output)).toMatch(/timeout/);
    await remove(id);
    await until(async () => processesWith(["sleep", "77.3"]).length + processesWith(["sleep", "66.3"]).length === 0, 5_000);
  });

  it("onFailure kill: an unhealthy container is killed (SIGKILL, exit 137) through a kill intent", async () => {
    const { id } = await run(["sleep", "1000"], { test: ["false"], intervalMs: 200, retries: 1, onFailure: "kill" });
    const c = await until(async () => {
      const c = await get(id);
      return c.state === "exited" && c;
    }, 15_000);
    expect(c).toMatchObject({ exitCode: 137, health: "none" });
    const evs = await events(id);
    const unhealthy = evs.find((e) => e.type === "ContainerHealthChanged")!;
    const kill = evs.find((e) => e.type === "ContainerKillRequested")!;
    const exit = evs.find((e) => e.type === "ContainerExited")!;
    expect(unhealthy.data).toMatchObject({ status: "unhealthy", failingStreak: 1 });
    expect(kill).toMatchObject({ actor: `berth/${d.node}/health`, causationId: unhealthy.eventId, data: { signal: "SIGKILL" } });
    expect(exit.data).toMatchObject({ exitCode: 137 });
    expect(unhealthy.seq).toBeLessThan(kill.seq);
    expect(kill.seq).toBeLessThan(exit.seq);
    // Probing ended with the run: nothing more is recorded.
    const n = evs.length;
    await sleep(800);
    expect((await events(id)).length).toBe(n);
    await remove(id);
  });

  it("onFailure restart: an unhealthy container is restarted through a restart intent", async () => {
    const { id, pid } = await run(["sleep", "1000"], { test: ["false"], intervalMs: 200, retries: 1, onFailure: "restart" });
    const c = await until(async () => {
      const c = await get(id);
      return c.state === "running" && c.pid !== pid && c;
    }, 15_000);
    const evs = await events(id);
    const unhealthy = evs.find((e) => e.type === "ContainerHealthChanged")!;
    const restart = evs.find((e) => e.type === "ContainerRestartRequested")!;
    expect(restart).toMatchObject({ actor: `berth/${d.node}/health`, causationId: unhealthy.eventId });
    expect(evs.filter((e) => e.seq > restart.seq).map((e) => e.type).slice(0, 2)).toEqual(["ContainerExited", "ContainerStarted"]);
    expect(c.pid).toBeGreaterThan(0);
    await remove(id);
  });

  it("keeps the status across a daemon restart and resumes probing", async () => {
    const dir = await mkdtemp(join(hostDir, "r-"));
    await writeFile(join(dir, "ok"), "");
    const { id, pid } = await run(
      ["sleep", "1000"],
      { test: ["test", "-f", "/hc/ok"], intervalMs: 200, retries: 2 },
      { mounts: [{ type: "bind", source: dir, target: "/hc", readOnly: true }] },
    );
    await until(async () => (await get(id)).health === "healthy", 15_000);

    const { dataRoot, node } = d;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    await sleep(300);
    d = await startTestDaemon({ dataRoot, node, natsPort });
    // Straight from the log: still healthy, same process, nothing appended to reset it.
    expect(await get(id)).toMatchObject({ state: "running", pid, health: "healthy" });
    await sleep(1_000);
    expect((await health(id)).map((e) => e.data.status)).toEqual(["healthy"]);

    // The new daemon probes: the check starts failing, and it goes unhealthy.
    await unlink(join(dir, "ok"));
    await until(async () => (await get(id)).health === "unhealthy", 15_000);
    const hs = await health(id);
    expect(hs.map((e) => e.data)).toEqual([
      { status: "healthy", failingStreak: 0 },
      { status: "unhealthy", failingStreak: 2 },
    ]);
    expect(hs[1].actor).toBe(`berth/${node}/health`);
    await remove(id);
  });
});
