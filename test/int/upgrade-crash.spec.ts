// The upgrade's crash matrix (issue 8, story 6): the daemon is killed -9 (BERTH_FAULT) at each
// step of an upgrade, of an upgrade that rolls back, and of a rollback; a new daemon on the same
// data root finishes the saga or rolls it back, exactly once. The container never runs twice,
// is never left without a working revision, and keeps its IP and its volume's data.
import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nextState, type LifecycleState } from "../../src/aggregates/container/transitions.js";
import { OUTCOMES, type ContainerEvent, type EventType } from "../../src/events/types.js";
import { BUILT, ProcSession } from "../support/daemon-proc.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing, UPGRADE_IMAGES } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "upgrade images").length > 0;

type Ev = { type: EventType; seq: number; eventId: string; causationId: string | null; data: Record<string, unknown> };
type C = { id: string; state: string; pid: number | null; pending: string | null; ip: string | null; image: string; revision: number };

interface Case {
  name: string;
  /** Where the daemon dies (BERTH_FAULT), counted from the daemon start that sends the saga's command. */
  fault: string;
  /** Upgrade to this image, or roll back an upgrade to busybox:v2 made before. */
  saga: { upgrade: string } | "rollback";
  /** Where it ends: image and revision. */
  ends: { image: string; revision: number; outcome: "ContainerUpgraded" | "ContainerUpgradeRolledBack" };
}

const V2 = { image: "busybox:v2", revision: 1, outcome: "ContainerUpgraded" } as const;
const BACK = { image: "busybox:latest", revision: 0, outcome: "ContainerUpgradeRolledBack" } as const;
const CASES: Case[] = [
  // run's start is the first intent of the daemon's life, the upgrade's the second.
  { name: "after the request", fault: "after-intent:2", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "after the old container stopped", fault: "upgrade-stopped:1", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "after the new rw layer was made", fault: "upgrade-layer:1", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "after the new container started", fault: "upgrade-started:1", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "during the health gate", fault: "upgrade-gate:1", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "before the outcome", fault: "upgrade-settling:1", saga: { upgrade: "busybox:v2" }, ends: V2 },
  { name: "a failing upgrade, once it is recorded as failed", fault: "upgrade-rollback:1", saga: { upgrade: "busybox:broken" }, ends: BACK },
  { name: "a failing upgrade, after the old layer is back", fault: "upgrade-layer:2", saga: { upgrade: "busybox:broken" }, ends: BACK },
  { name: "a failing upgrade, after the old container started again", fault: "upgrade-started:1", saga: { upgrade: "busybox:broken" }, ends: BACK },
  { name: "a rollback, after its request", fault: "after-intent:1", saga: "rollback", ends: { ...BACK, outcome: "ContainerUpgradeRolledBack" } },
  { name: "a rollback, after the old layer is back", fault: "upgrade-layer:1", saga: "rollback", ends: BACK },
  { name: "a rollback, after the old container started", fault: "upgrade-started:1", saga: "rollback", ends: BACK },
];

describe.skipIf(skip)("upgrade crash matrix", () => {
  let dataRoot: string;
  let session: ProcSession;
  const node = `upc${randomBytes(3).toString("hex")}`;
  const cmd = (verb: string, body: unknown, timeoutMs?: number) => session.cmd(verb, body, timeoutMs);
  const http = <T>(path: string) => session.http<T>(path);
  const exec = async (id: string, script: string) => {
    const r = await cmd("exec", { id, cmd: ["sh", "-c", script], timeoutSec: 20 });
    expect(r.error).toBeUndefined();
    return (r.result as { stdout: string }).stdout;
  };

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-upcrash-"));
    session = new ProcSession(dataRoot, node, await freePort());
    await session.up();
    for (const [name, path] of Object.entries(UPGRADE_IMAGES)) expect((await cmd("image.import", { source: `oci-archive:${path}`, name })).error).toBeUndefined();
    await session.down();
  });
  afterAll(async () => {
    await session?.destroy();
  });

  for (const c of CASES) {
    it(`dies ${c.name} (${c.fault}), then converges on ${c.ends.image}`, async () => {
      try {
        await crashAndConverge(c);
      } finally {
        await session.down();
      }
    });
  }

  async function crashAndConverge(c: Case) {
    const vol = `data-${randomBytes(3).toString("hex")}`;
    const spec = { image: "busybox:latest", cmd: ["sleep", "1000"], stopTimeoutSec: 1, mounts: [{ type: "volume", source: vol, target: "/data" }] };
    let id: string;
    if (c.saga === "rollback") {
      // The upgrade to roll back is made by a daemon that does not die.
      await session.up();
      id = (await cmd("run", spec)).result!.id as string;
      await exec(id, "echo kept > /data/file; echo rev0 > /root/layer");
      expect((await cmd("upgrade", { id, image: "busybox:v2", healthGateSec: 1 }, 60_000)).error).toBeUndefined();
      await session.down();
      await session.up({ BERTH_FAULT: c.fault });
    } else {
      await session.up({ BERTH_FAULT: c.fault });
      id = (await cmd("run", spec)).result!.id as string;
      await exec(id, "echo kept > /data/file; echo rev0 > /root/layer");
    }
    const before = (await http<C>(`/v1/containers/${id}`)).body;
    const body = c.saga === "rollback" ? { id } : { id, image: c.saga.upgrade, healthGateSec: 2 };
    expect(await session.diesDuring(c.saga === "rollback" ? "rollback" : "upgrade", body)).toBe("died");
    const settled = await session.restartSettled<C>(id, 40_000);
    expect(settled).toMatchObject({ state: "running", image: c.ends.image, revision: c.ends.revision, ip: before.ip });
    // It runs once: the process the saga stopped is gone, the one the log names is alive.
    expect(alive(before.pid!)).toBe(false);
    expect(alive(settled.pid!)).toBe(true);
    expect(await exec(id, "cat /data/file")).toBe("kept\n");
    // Back on revision 0: its rw layer as it was; on the new one: a fresh layer.
    expect(await exec(id, "cat /root/layer 2>/dev/null || echo fresh")).toBe(c.ends.revision === 0 ? "rev0\n" : "fresh\n");

    const { events } = (await http<{ events: Ev[] }>(`/v1/containers/${id}/events`)).body;
    let state: LifecycleState | "removed" | null = null;
    for (const e of events) {
      state = e.type === "ContainerCreated" ? "created" : nextState(state as LifecycleState, e.type as ContainerEvent["type"]);
      expect(state, `${e.type} is allowed`).not.toBeNull();
    }
    const sagas = events.filter((e) => e.type === "ContainerUpgradeRequested" || e.type === "ContainerRollbackRequested");
    for (const i of sagas) {
      const answers = events.filter((e) => e.causationId === i.eventId && OUTCOMES[i.type]!.includes(e.type));
      expect(answers.map((e) => e.type), `${i.type} answered once`).toHaveLength(1);
    }
    expect(events.filter((e) => e.causationId === sagas.at(-1)!.eventId && OUTCOMES[sagas.at(-1)!.type]!.includes(e.type))[0].type).toBe(c.ends.outcome);
    // Each of the saga's steps is recorded once, however often it was done.
    const mine = events.filter((e) => e.causationId === sagas.at(-1)!.eventId);
    const starts = mine.filter((e) => e.type === "ContainerStarted");
    expect(new Set(starts.map((e) => e.data.startedAt)).size).toBe(starts.length);
    expect(mine.filter((e) => e.type === "ContainerUpgradeFailed").length).toBeLessThanOrEqual(1);
    // Only the kept revisions' layers stay on the host.
    const revs = () => readdirSync(join(dataRoot, "containers", id)).filter((n) => n.startsWith("rev-"));
    const want = c.ends.revision === 1 ? ["rev-1"] : [];
    await until(async () => JSON.stringify(revs()) === JSON.stringify(want), 5_000).catch(() => undefined);
    expect(revs()).toEqual(want);

    expect((await cmd("remove", { id, force: true })).ok).toBe(true);
    expect(readdirSync(join(dataRoot, "containers"))).toEqual([]);
  }
});
