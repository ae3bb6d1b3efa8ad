// The health decision as a table (Docker's rules): one probe result, the status and streak it
// leads to, and what becoming unhealthy asks for.
import { describe, expect, it } from "vitest";
import {
  HEALTH_DEFAULTS,
  healthConfig,
  inStartPeriod,
  nextHealth,
  probeArgv,
  unhealthyAction,
  type HealthStatus,
} from "../../src/handlers/health.js";

describe("nextHealth", () => {
  type Row = [string, HealthStatus, number, boolean, number, boolean, HealthStatus, number, boolean];
  it.each<Row>([
    // name, prev status, prev streak, probe ok, retries, in start period → status, streak, changed
    ["first success", "starting", 0, true, 3, false, "healthy", 0, true],
    ["success inside the start period", "starting", 0, true, 3, true, "healthy", 0, true],
    ["success after failures", "starting", 2, true, 3, false, "healthy", 0, true],
    ["success keeps healthy", "healthy", 0, true, 3, false, "healthy", 0, false],
    ["one success heals", "unhealthy", 7, true, 3, false, "healthy", 0, true],
    ["failure below retries", "starting", 0, false, 3, false, "starting", 1, false],
    ["failure reaching retries", "starting", 2, false, 3, false, "unhealthy", 3, true],
    ["retries 1: one failure is enough", "starting", 0, false, 1, false, "unhealthy", 1, true],
    ["start period forgives a starting container", "starting", 0, false, 1, true, "starting", 0, false],
    ["start period keeps the streak as it is", "starting", 1, false, 2, true, "starting", 1, false],
    ["start period does not forgive a healthy one", "healthy", 0, false, 1, true, "unhealthy", 1, true],
    ["healthy: failure below retries stays healthy", "healthy", 1, false, 3, false, "healthy", 2, false],
    ["healthy: failure reaching retries", "healthy", 2, false, 3, false, "unhealthy", 3, true],
    ["unhealthy: more failures, no change", "unhealthy", 3, false, 3, false, "unhealthy", 4, false],
  ])("%s", (_name, status, failingStreak, ok, retries, inStart, toStatus, toStreak, changed) => {
    expect(nextHealth({ status, failingStreak }, { ok }, { retries, inStartPeriod: inStart })).toEqual({
      status: toStatus,
      failingStreak: toStreak,
      changed,
    });
  });

  it("a run of probes: starting → (start period) → healthy → unhealthy after retries → healthy", () => {
    let h = { status: "starting" as HealthStatus, failingStreak: 0 };
    const seen: HealthStatus[] = [];
    const probes: [boolean, boolean][] = [
      [false, true], [false, true], [true, false], [false, false], [false, false], [false, false], [true, false],
    ];
    for (const [ok, inStart] of probes) {
      const n = nextHealth(h, { ok }, { retries: 3, inStartPeriod: inStart });
      if (n.changed) seen.push(n.status);
      h = n;
    }
    expect(seen).toEqual(["healthy", "unhealthy", "healthy"]);
  });
});

describe("unhealthyAction", () => {
  it.each([
    ["none", {}, null],
    ["kill", {}, { type: "Kill", signal: "SIGKILL" }],
    ["kill", { stopSignal: "SIGINT" }, { type: "Kill", signal: "SIGKILL" }],
    ["stop", {}, { type: "Stop", signal: "SIGTERM", timeoutSec: 10 }],
    ["stop", { stopSignal: "SIGQUIT", stopTimeoutSec: 2 }, { type: "Stop", signal: "SIGQUIT", timeoutSec: 2 }],
    ["restart", {}, { type: "Restart", timeoutSec: 10 }],
    ["restart", { stopTimeoutSec: 0 }, { type: "Restart", timeoutSec: 0 }],
  ] as const)("onFailure %s with %o → %o", (onFailure, spec, cmd) => {
    expect(unhealthyAction(onFailure, spec)).toEqual(cmd);
  });
});

describe("health config", () => {
  it("fills Docker's defaults", () => {
    expect(healthConfig({ test: ["true"] })).toEqual({ argv: ["true"], ...HEALTH_DEFAULTS });
    expect(HEALTH_DEFAULTS).toEqual({ intervalMs: 30_000, timeoutMs: 30_000, retries: 3, startPeriodMs: 0, onFailure: "none" });
  });

  it("keeps what is given", () => {
    expect(
      healthConfig({ test: ["sh", "-c", "x"], intervalMs: 200, timeoutMs: 100, retries: 1, startPeriodMs: 5, onFailure: "kill" }),
    ).toEqual({ argv: ["sh", "-c", "x"], intervalMs: 200, timeoutMs: 100, retries: 1, startPeriodMs: 5, onFailure: "kill" });
  });

  it.each([
    [["test", "-f", "/tmp/ok"], ["test", "-f", "/tmp/ok"]],
    [["CMD", "curl", "-f", "http://x/"], ["curl", "-f", "http://x/"]],
    [["CMD-SHELL", "test -f /tmp/ok || exit 1"], ["/bin/sh", "-c", "test -f /tmp/ok || exit 1"]],
  ])("probe argv of %j is %j", (test, argv) => {
    expect(probeArgv(test)).toEqual(argv);
  });

  it("counts the start period from the run's start", () => {
    const startedAt = "2026-01-01T00:00:00.000Z";
    const t = Date.parse(startedAt);
    expect(inStartPeriod(t + 999, startedAt, 1000)).toBe(true);
    expect(inStartPeriod(t + 1000, startedAt, 1000)).toBe(false);
    expect(inStartPeriod(t + 1, startedAt, 0)).toBe(false);
  });
});
