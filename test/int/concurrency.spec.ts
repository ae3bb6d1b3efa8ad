// 100 concurrent conflicting commands on one container from 10 clients: every reply is a clean
// answer, and the log never holds a transition the state machine forbids.
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nextState, type LifecycleState } from "../../src/aggregates/container/transitions.js";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type Ev = { type: Parameters<typeof nextState>[1]; seq: number };

describe.skipIf(skip)("concurrent conflicting commands", () => {
  let d: TestDaemon;
  let clients: NatsConnection[] = [];
  beforeAll(async () => {
    d = await startTestDaemon();
    clients = await Promise.all(
      Array.from({ length: 10 }, () => connect({ servers: d.client.nats.servers, user: d.client.nats.user, pass: d.client.nats.pass })),
    );
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await d?.destroy();
  });

  it("keeps the log within the transition table", async () => {
    const run = await d.cmd<{ id: string }>("container.run", {
      name: "contended",
      image: "busybox",
      cmd: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"],
      stopTimeoutSec: 2,
    });
    const id = run.result!.id;
    // One remove among them: after it, the rest are NotFound.
    const verbs = ["start", "stop", "restart", "pause", "unpause", "kill", "start", "stop", "start", "restart"];
    const codes: Record<string, number> = {};
    await Promise.all(
      clients.map(async (nc, ci) => {
        for (let i = 0; i < 10; i++) {
          const verb = ci === 9 && i === 7 ? "remove" : verbs[(ci + i * 3) % verbs.length];
          const body = verb === "stop" || verb === "restart" ? { id, timeoutSec: 2 } : { id };
          const m = await nc.request(`berth.cmd.container.${verb}`, JSON.stringify(body), { timeout: 60_000 });
          const r = m.json<{ ok: boolean; error?: { code: string } }>();
          const code = r.ok ? "ok" : r.error!.code;
          codes[code] = (codes[code] ?? 0) + 1;
        }
      }),
    );
    expect(Object.values(codes).reduce((a, b) => a + b, 0)).toBe(100);
    // Only clean answers: done, refused for the state, or gone after a remove.
    expect(Object.keys(codes).filter((c) => !["ok", "Conflict", "NotFound"].includes(c))).toEqual([]);
    expect(codes.ok).toBeGreaterThan(0);
    expect(codes.Conflict).toBeGreaterThan(0);

    const final = await until(async () => {
      const r = await d.http(`/v1/containers/${id}`);
      if (r.status === 404) return { state: "removed" as const, pid: null };
      const c = (await r.json()) as { state: string; pending: string | null; pid: number | null };
      return c.pending === null && c;
    }, 30_000);

    const { events } = await d.get<{ events: Ev[] }>(`/v1/events?container=${id}&limit=10000`);
    let state: LifecycleState | "removed" = "created";
    for (const e of events.slice(1)) {
      const next = nextState(state as LifecycleState, e.type);
      expect(next, `${e.type} in ${state} (seq ${e.seq})`).not.toBeNull();
      state = next!;
    }
    expect(state).toBe(final.state);
    const metrics = await (await d.http("/metrics", { token: null })).text();
    expect(metrics).toMatch(/^berth_transition_anomalies 0$/m);

    // The host agrees with the log.
    if (final.state === "running" || final.state === "paused") expect(alive(final.pid!)).toBe(true);
    if (final.state !== "removed") await d.cmd("container.remove", { id, force: true });
  });
});
