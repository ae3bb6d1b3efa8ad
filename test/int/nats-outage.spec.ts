// NATS goes away (kill -9) and comes back: containers keep running, exits seen meanwhile are
// recorded once it is back, commands work again, and no acknowledged event is lost.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventStore } from "../../src/events/store.js";
import { containerSubject } from "../../src/events/types.js";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type C = { state: string; exitCode: number | null; pid: number | null };
type Ev = { type: string };

describe.skipIf(skip)("NATS outages", () => {
  describe("an external NATS that goes away", () => {
    let nats: TestNats;
    let d: TestDaemon;
    beforeAll(async () => {
      nats = await startNats();
      d = await startTestDaemon({ natsUrl: nats.url });
    });
    afterAll(async () => {
      try {
        await d?.destroy();
      } finally {
        await nats?.stop();
      }
    });

    it("keeps containers running and records an exit seen while it was down, once", async () => {
      const a = (await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 })).result!;
      const b = (await d.cmd<{ id: string }>("container.run", { image: "busybox", cmd: ["sh", "-c", "sleep 1; exit 4"] })).result!;
      await nats.kill();
      await until(async () => existsSync(join(d.dataRoot, "exits", b.id)), 10_000);
      // A moment more for the daemon to try (and fail) to record it.
      await new Promise((r) => setTimeout(r, 500));
      expect(alive(a.pid)).toBe(true);
      await nats.restart();

      const c = await until(async () => {
        const c = await d.get<C>(`/v1/containers/${b.id}`);
        return c.state === "exited" && c;
      }, 20_000);
      expect(c.exitCode).toBe(4);
      const { events } = await d.get<{ events: Ev[] }>(`/v1/containers/${b.id}/events`);
      expect(events.filter((e) => e.type === "ContainerExited")).toHaveLength(1);

      // Commands work again, on both containers.
      const stop = await until(async () => {
        const r = await d.cmd<{ state: string }>("container.stop", { id: a.id, timeoutSec: 1 }).catch(() => null);
        return r?.ok && r;
      }, 20_000);
      expect(stop.result?.state).toBe("exited");
      expect(alive(a.pid)).toBe(false);
    });

    it("keeps every acknowledged command of a burst that NATS died in", async () => {
      const acked: string[] = [];
      const burst = Array.from({ length: 60 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i * 5));
        const r = await d.cmd<{ id: string }>("container.create", { image: "busybox", cmd: ["true"] }, 5_000).catch(() => null);
        if (r?.ok) acked.push(r.result!.id);
      });
      await new Promise((r) => setTimeout(r, 120));
      await nats.kill();
      await Promise.all(burst);
      await nats.restart();
      expect(acked.length).toBeGreaterThan(0);

      // Read the log itself, from a fresh connection.
      const nc = await nats.connect();
      const store = await EventStore.open(nc);
      for (const id of acked) {
        const events = await store.readSubject(containerSubject(id));
        expect(events.map((e) => e.type)).toEqual(["ContainerCreated"]);
      }
      await nc.close();
      // And the daemon's read model has them all once it has caught up.
      await until(async () => {
        const { containers } = await d.get<{ containers: { id: string }[] }>("/v1/containers?all=true");
        const ids = new Set(containers.map((c) => c.id));
        return acked.every((id) => ids.has(id));
      }, 20_000);
    });
  });

  describe("the embedded nats-server killed -9", () => {
    let d: TestDaemon;
    beforeAll(async () => {
      d = await startTestDaemon();
    });
    afterAll(async () => {
      await d?.destroy();
    });

    it("is started again by the daemon, which carries on", async () => {
      const a = (await d.cmd<{ id: string; pid: number }>("container.run", { image: "busybox", cmd: ["sleep", "1000"] })).result!;
      const pidFile = join(d.dataRoot, "nats", "nats-server.pid");
      const old = Number(readFileSync(pidFile, "utf8"));
      process.kill(old, "SIGKILL");
      const fresh = await until(async () => {
        const p = Number(readFileSync(pidFile, "utf8"));
        return p !== old && alive(p) && p;
      }, 15_000);
      expect(fresh).not.toBe(old);
      expect(alive(a.pid)).toBe(true);
      const r = await until(async () => {
        const r = await d.cmd("container.remove", { id: a.id, force: true }, 5_000).catch(() => null);
        return r?.ok && r;
      }, 20_000);
      expect(r.ok).toBe(true);
      expect(alive(a.pid)).toBe(false);
    });
  });
});
