// Health checks, the decisions only (Docker's rules): what one probe result does to a container's
// health, and what becoming unhealthy asks for. Pure and table-tested; the HealthMonitor
// (health-monitor.ts) runs the probes and appends what is decided here.
import type { ContainerSpec, Healthcheck } from "../shared/spec.js";
import type { ContainerCommand } from "../aggregates/container/decider.js";

export type HealthStatus = "starting" | "healthy" | "unhealthy";
export type OnFailure = "none" | "kill" | "restart" | "stop";

export interface HealthView {
  status: HealthStatus;
  /** Consecutive failures that counted (failures inside the start period do not). */
  failingStreak: number;
}

/** A healthcheck with Docker's defaults filled in. */
export interface HealthConfig {
  argv: string[];
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
  onFailure: OnFailure;
}

export const HEALTH_DEFAULTS = {
  intervalMs: 30_000,
  timeoutMs: 30_000,
  retries: 3,
  startPeriodMs: 0,
  onFailure: "none",
} as const;

export function healthConfig(hc: Healthcheck): HealthConfig {
  return {
    argv: probeArgv(hc.test),
    intervalMs: hc.intervalMs ?? HEALTH_DEFAULTS.intervalMs,
    timeoutMs: hc.timeoutMs ?? HEALTH_DEFAULTS.timeoutMs,
    retries: hc.retries ?? HEALTH_DEFAULTS.retries,
    startPeriodMs: hc.startPeriodMs ?? HEALTH_DEFAULTS.startPeriodMs,
    onFailure: hc.onFailure ?? HEALTH_DEFAULTS.onFailure,
  };
}

/**
 * The argv to exec. berth's form is a plain argv (API.md); Docker's `["CMD", …]` and
 * `["CMD-SHELL", "…"]` are accepted too, so a Dockerfile's HEALTHCHECK carries over unchanged.
 */
export function probeArgv(test: readonly string[]): string[] {
  if (test[0] === "CMD") return test.slice(1);
  if (test[0] === "CMD-SHELL") return ["/bin/sh", "-c", test.slice(1).join(" ")];
  return [...test];
}

/**
 * One probe's effect. A success makes it healthy with the streak reset. A failure counts, and
 * `retries` counted failures in a row make it unhealthy, except while it is still `starting`
 * inside its start period (Docker: the start period only forgives a container that has never
 * been healthy; a healthy one that fails early counts).
 */
export function nextHealth(
  prev: HealthView,
  probe: { ok: boolean },
  opts: { retries: number; inStartPeriod: boolean },
): HealthView & { changed: boolean } {
  let status = prev.status;
  let failingStreak = prev.failingStreak;
  if (probe.ok) {
    status = "healthy";
    failingStreak = 0;
  } else if (!(prev.status === "starting" && opts.inStartPeriod)) {
    failingStreak = prev.failingStreak + 1;
    if (failingStreak >= opts.retries) status = "unhealthy";
  }
  return { status, failingStreak, changed: status !== prev.status };
}

/**
 * What an unhealthy container asks for, as the command the user would have sent: `kill` sends
 * SIGKILL, `stop` stops it as `berth stop` would (its stop signal and timeout), `restart`
 * restarts it. The command goes through the decider like any other, so its guards apply.
 */
export function unhealthyAction(onFailure: OnFailure, spec: Pick<ContainerSpec, "stopSignal" | "stopTimeoutSec">): ContainerCommand | null {
  const timeoutSec = spec.stopTimeoutSec ?? 10;
  switch (onFailure) {
    case "none":
      return null;
    case "kill":
      return { type: "Kill", signal: "SIGKILL" };
    case "stop":
      return { type: "Stop", signal: spec.stopSignal ?? "SIGTERM", timeoutSec };
    case "restart":
      return { type: "Restart", timeoutSec };
    default: {
      const _never: never = onFailure;
      throw new Error(`unknown onFailure ${String(_never)}`);
    }
  }
}

/** Inside the start period: the probe began less than startPeriodMs after the run started. */
export function inStartPeriod(probeStartMs: number, startedAt: string, startPeriodMs: number): boolean {
  return probeStartMs - Date.parse(startedAt) < startPeriodMs;
}

/** A probe's output as ContainerHealthChanged records it: what it printed (or that it timed out), at most OUTPUT_MAX characters. */
const OUTPUT_MAX = 4096;
export function probeOutput(r: { stdout: string; stderr: string; timedOut: boolean }, hc: Pick<HealthConfig, "timeoutMs">): string {
  const output = r.stdout + r.stderr;
  const text = r.timedOut ? `health check exceeded its timeout (${hc.timeoutMs} ms)${output ? `\n${output}` : ""}` : output;
  return text.length > OUTPUT_MAX ? text.slice(0, OUTPUT_MAX) : text;
}
