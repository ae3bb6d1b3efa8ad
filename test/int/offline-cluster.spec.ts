// Local checkpoints on the real 3-server JetStream cluster (issue 11, stories 2 and 3): daemons n1
// and n2 joined to it. A marked container is migrated from n1 to n2, and n1's daemon is killed -9
// right after the migration's end, before its copy is deleted (fault point copy-retiring); a
// second marked container of n1 loses its process (the reboot). Then all three servers die. n1
// starts offline: it starts the second container from its copy and not the migrated one (its copy
// says the source dumped it: the target may run it). The cluster comes back: the journal goes in
// once, the migrated container runs on n2 only, and n1's stale copy goes after the grace period.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, startDaemonProc, type ProcSession } from "../support/daemon-proc.js";
import { startClusterDaemons, type ClusterDaemons } from "../support/cluster-daemons.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "criu").length > 0;

type C = { id: string; name: string; node: string; state: string; pid: number | null };

describe.skipIf(skip)("local checkpoints on a JetStream cluster", () => {
  let h: ClusterDaemons;
  let sessions: ProcSession[];
  const suffix = randomBytes(2).toString("hex");
  const names = [`o1x${suffix}`, `o2x${suffix}`];
  const killed: number[] = [];

  beforeAll(async () => {
    h = await startClusterDaemons(names);
    ({ sessions } = h);
  }, 120_000);
  afterAll(async () => {
    for (const pid of killed) if (alive(pid)) process.kill(pid, "SIGKILL");
    await h?.stop();
  }, 180_000);

  it("given n1 killed after a migration away and the whole cluster down, then n1 starts only what it still owns, and the hand-back leaves the migrated one on n2 alone", async () => {
    const [s1, s2] = sessions;
    const copy = (s: ProcSession, id: string) => join(s.dataRoot, "local-checkpoints", `${id}.json`);
    // n1's daemon again, armed to die when its keeper sees a copy's container gone.
    await s1.down();
    await s1.up({ BERTH_FAULT: "copy-retiring:1" });
    const run = async (name: string) => {
      const r = await h.cmd("run", { name: `${name}-${suffix}`, image: "busybox", cmd: ["sleep", "1000"], node: names[0], annotations: { "berth.io/checkpoint": "true" } }, 60_000, names[0]);
      expect(r.error).toBeUndefined();
      return r.result as { id: string; pid: number };
    };
    const mover = await run("mover");
    const stayer = await run("stayer");
    await until(async () => existsSync(copy(s1, mover.id)) && existsSync(copy(s1, stayer.id)), 10_000);

    // The migration ends; n1 dies before its copy of the mover is deleted.
    await Promise.race([h.cmd("migrate", { id: mover.id, targetNode: names[1] }, 120_000, names[0]).catch(() => null), s1.d!.exited]);
    await s1.d!.exited;
    expect(s1.d!.child.signalCode).toBe("SIGKILL");
    const moved = (await s2.http<C>(`/v1/containers/${mover.id}`)).body;
    expect(moved).toMatchObject({ node: names[1], state: "running" });
    killed.push(moved.pid!);
    expect(JSON.parse(readFileSync(copy(s1, mover.id), "utf8"))).toMatchObject({ retiring: { reason: "migrated", toNode: names[1] } });
    // n1's host reboots: the stayer's process is gone; then the whole log goes.
    process.kill(stayer.pid, "SIGKILL");
    await until(async () => !alive(stayer.pid), 10_000);
    await h.cluster.killAll();

    const args = [...s1.baseArgs, "--offline-after", "1", "--checkpoint-grace", "3"];
    s1.d = await startDaemonProc(s1.dataRoot, s1.node, s1.natsPort, {}, args);
    s1.nc = null;
    const listed = (await s1.http<{ offline: boolean; containers: C[] }>("/v1/containers")).body;
    expect(listed.offline).toBe(true);
    expect(listed.containers.map((c) => c.name)).toEqual([`stayer-${suffix}`]);
    const offlinePid = listed.containers[0].pid!;
    killed.push(offlinePid);
    expect(existsSync(join(s1.dataRoot, "runc", mover.id))).toBe(false);

    // The cluster is back.
    await h.cluster.coldRestart();
    await until(async () => (await s1.http("/readyz").catch(() => ({ status: 0 }))).status === 200, 60_000);
    expect((await s1.http<C>(`/v1/containers/${stayer.id}`)).body).toMatchObject({ node: names[0], state: "running", pid: offlinePid });
    expect((await s2.http<C>(`/v1/containers/${mover.id}`)).body).toMatchObject({ node: names[1], state: "running", pid: moved.pid });
    expect(alive(moved.pid!)).toBe(true);
    const spans = (await s1.http<{ events: { type: string; node: string; data: { started?: string[]; facts?: number } }[] }>("/v1/events?type=NodeOffline,NodeOnline")).body;
    expect(spans.events.filter((e) => e.node === names[0]).map((e) => [e.type, e.data.started ?? e.data.facts])).toEqual([["NodeOffline", [stayer.id]], ["NodeOnline", 1]]);
    // n1's copy of the mover goes after the grace; n2 has its own.
    await until(async () => !existsSync(copy(s1, mover.id)), 15_000);
    expect(existsSync(copy(s2, mover.id))).toBe(true);
    expect(existsSync(copy(s1, stayer.id))).toBe(true);
    // Nothing of the mover is left on n1 (its clean-up was cut short by the kill).
    expect(readFileSync("/proc/mounts", "utf8").split("\n").filter((l) => l.includes(s1.dataRoot) && l.includes(mover.id))).toEqual([]);
    expect(existsSync(join(s1.dataRoot, "containers", mover.id))).toBe(false);
    // The session's daemon again, for the suite's clean-up.
    await s1.down();
    s1.d = null;
  }, 300_000);
});
