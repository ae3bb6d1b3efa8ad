// The restart decision as a table: given policy, exit, user stop and attempt, then the decision.
import { describe, expect, it } from "vitest";
import type { RestartPolicy } from "../../src/shared/spec.js";
import { backoffDelay, decideRestart, type RestartInput } from "../../src/handlers/restart-policy.js";

const base: RestartInput = { policy: { name: "no" }, exitCode: 1, stoppedByUser: false, attempt: 0, autoRemove: false };
const given = (policy: RestartPolicy, o: Partial<RestartInput> = {}) => decideRestart({ ...base, policy, ...o });

type Row = [string, RestartPolicy, Partial<RestartInput>, false | { attempt: number; delayMs: number }];

const table: Row[] = [
  // policy, exit, user stop → decision
  ["no: never, even on failure", { name: "no" }, { exitCode: 1 }, false],
  ["no: never after a clean exit", { name: "no" }, { exitCode: 0 }, false],
  ["no: not at boot either", { name: "no" }, { exitCode: 1, trigger: "boot" }, false],
  ["always: after a failure", { name: "always" }, { exitCode: 1 }, { attempt: 1, delayMs: 100 }],
  ["always: after a clean exit", { name: "always" }, { exitCode: 0 }, { attempt: 1, delayMs: 100 }],
  ["always: not after a user stop", { name: "always" }, { exitCode: 137, stoppedByUser: true }, false],
  ["always: at boot even after a user stop (Docker)", { name: "always" }, { exitCode: 137, stoppedByUser: true, trigger: "boot" }, { attempt: 1, delayMs: 100 }],
  ["always: maxRetries does not apply", { name: "always", maxRetries: 0 }, { attempt: 50 }, { attempt: 51, delayMs: 60_000 }],
  ["unless-stopped: after a failure", { name: "unless-stopped" }, { exitCode: 2 }, { attempt: 1, delayMs: 100 }],
  ["unless-stopped: after a clean exit", { name: "unless-stopped" }, { exitCode: 0 }, { attempt: 1, delayMs: 100 }],
  ["unless-stopped: not after a user stop", { name: "unless-stopped" }, { stoppedByUser: true }, false],
  ["unless-stopped: not at boot after a user stop", { name: "unless-stopped" }, { stoppedByUser: true, trigger: "boot" }, false],
  ["unless-stopped: at boot when not stopped by the user", { name: "unless-stopped" }, { exitCode: 0, trigger: "boot" }, { attempt: 1, delayMs: 100 }],
  ["on-failure: after a non-zero exit", { name: "on-failure" }, { exitCode: 3 }, { attempt: 1, delayMs: 100 }],
  ["on-failure: after a failed start (-1)", { name: "on-failure" }, { exitCode: -1 }, { attempt: 1, delayMs: 100 }],
  ["on-failure: after SIGKILL from outside (137)", { name: "on-failure" }, { exitCode: 137 }, { attempt: 1, delayMs: 100 }],
  ["on-failure: not after a clean exit", { name: "on-failure" }, { exitCode: 0 }, false],
  ["on-failure: not after a user stop", { name: "on-failure" }, { exitCode: 143, stoppedByUser: true }, false],
  ["on-failure: not at boot after a user stop", { name: "on-failure" }, { exitCode: 143, stoppedByUser: true, trigger: "boot" }, false],
  ["on-failure:2, first retry", { name: "on-failure", maxRetries: 2 }, { exitCode: 3, attempt: 0 }, { attempt: 1, delayMs: 100 }],
  ["on-failure:2, second retry", { name: "on-failure", maxRetries: 2 }, { exitCode: 3, attempt: 1 }, { attempt: 2, delayMs: 200 }],
  ["on-failure:2, retries used up", { name: "on-failure", maxRetries: 2 }, { exitCode: 3, attempt: 2 }, false],
  ["on-failure:2, used up at boot too", { name: "on-failure", maxRetries: 2 }, { exitCode: 3, attempt: 2, trigger: "boot" }, false],
  ["on-failure:0 means no limit", { name: "on-failure", maxRetries: 0 }, { exitCode: 1, attempt: 1000 }, { attempt: 1001, delayMs: 60_000 }],
  ["autoRemove never restarts", { name: "always" }, { autoRemove: true }, false],
  ["own backoff", { name: "always", backoff: { initialMs: 250, maxMs: 1000 } }, { attempt: 2 }, { attempt: 3, delayMs: 1000 }],
];

/**
 * Issue 12's table, one row per cell: policy × stopped by the user × trigger. A daemon start and
 * a host reboot are both trigger "boot" (after a reboot the run that was cut records exit -1
 * first); what differs is only the exit code the policy sees.
 */
const TRIGGERS = {
  exit: { trigger: "exit", exitCode: 1 },
  "daemon start": { trigger: "boot", exitCode: 143 },
  "host reboot": { trigger: "boot", exitCode: -1 },
} as const;
const EXPECT: Record<RestartPolicy["name"], Record<"running" | "stopped by the user", Record<keyof typeof TRIGGERS, boolean>>> = {
  no: { running: { exit: false, "daemon start": false, "host reboot": false }, "stopped by the user": { exit: false, "daemon start": false, "host reboot": false } },
  "on-failure": { running: { exit: true, "daemon start": true, "host reboot": true }, "stopped by the user": { exit: false, "daemon start": false, "host reboot": false } },
  always: { running: { exit: true, "daemon start": true, "host reboot": true }, "stopped by the user": { exit: false, "daemon start": true, "host reboot": true } },
  "unless-stopped": { running: { exit: true, "daemon start": true, "host reboot": true }, "stopped by the user": { exit: false, "daemon start": false, "host reboot": false } },
};
const matrix = Object.entries(EXPECT).flatMap(([policy, byStop]) =>
  Object.entries(byStop).flatMap(([stop, byTrigger]) =>
    Object.entries(byTrigger).map(([trigger, restart]) => [policy, stop, trigger, restart] as const),
  ),
);

describe("decideRestart, the policy × user stop × trigger table (docs/API.md)", () => {
  it.each(matrix)("%s, %s, on %s → restart %s", (policy, stop, trigger, restart) => {
    const got = given({ name: policy as RestartPolicy["name"] }, { ...TRIGGERS[trigger as keyof typeof TRIGGERS], stoppedByUser: stop !== "running" });
    expect(got.restart).toBe(restart);
  });
});

describe("decideRestart", () => {
  it.each(table)("%s", (_name, policy, input, want) => {
    const got = given(policy, input);
    if (want === false) {
      expect(got.restart).toBe(false);
      expect(got).toMatchObject({ reason: expect.any(String) });
    } else {
      expect(got).toEqual({ restart: true, ...want });
    }
  });

  it("says why it does not restart", () => {
    expect(given({ name: "on-failure", maxRetries: 2 }, { attempt: 2 })).toEqual({ restart: false, reason: "gave up after 2 restarts" });
    expect(given({ name: "always" }, { stoppedByUser: true })).toEqual({ restart: false, reason: "stopped by the user" });
    expect(given({ name: "on-failure" }, { exitCode: 0 })).toMatchObject({ reason: expect.stringContaining("exited with 0") });
  });

  it("is pure: the same input gives the same decision", () => {
    const i: RestartInput = { ...base, policy: { name: "on-failure", maxRetries: 5 }, exitCode: 9, attempt: 3 };
    expect(decideRestart(i)).toEqual(decideRestart({ ...i }));
  });

  it("on-failure:N allows exactly N restarts in a row", () => {
    const policy: RestartPolicy = { name: "on-failure", maxRetries: 3, backoff: { initialMs: 10 } };
    const schedule: number[] = [];
    for (let attempt = 0; ; ) {
      const d = given(policy, { exitCode: 3, attempt });
      if (!d.restart) break;
      schedule.push(d.delayMs);
      attempt = d.attempt;
    }
    expect(schedule).toEqual([10, 20, 40]);
  });
});

describe("backoffDelay", () => {
  it("follows Docker's defaults: 100 ms doubling, capped at 60 s", () => {
    const got = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((a) => backoffDelay(undefined, a));
    expect(got).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 51_200, 60_000, 60_000]);
  });

  it("takes the container's own initial and maximum", () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffDelay({ initialMs: 100, maxMs: 400 }, a))).toEqual([100, 200, 400, 400, 400]);
    expect(backoffDelay({ initialMs: 500 }, 1)).toBe(500);
    expect(backoffDelay({ maxMs: 150 }, 3)).toBe(150);
  });

  it("stays capped for absurd attempts and treats attempt < 1 as the first", () => {
    expect(backoffDelay(undefined, 5000)).toBe(60_000);
    expect(backoffDelay(undefined, 0)).toBe(100);
    expect(backoffDelay(undefined, -3)).toBe(100);
  });
});
