// Pod migration (issue 10, stories 3 to 5 for pods): on a real 3-server cluster with two daemons,
// `pod.migrate` moves a pod with every member to the other node with their memory (a pod
// checkpoint on the source, each member restored into a sandbox of the target's subnet); a target
// that cannot restore it hands it back (the source restores it from the same checkpoint); either
// daemon killed -9 at a step of it, then back, leaves the pod running on exactly one node.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, type ProcSession } from "../support/daemon-proc.js";
import { leftAfterCleanup, NOTHING_LEFT, startClusterDaemons, type ClusterDaemons } from "../support/cluster-daemons.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "criu").length > 0;

type Member = { id: string; name: string; state: string };
type Pod = { id: string; name: string; node: string; state: string; ip: string | null; containers: Member[]; pending: string | null; lastError: string | null };
type C = { id: string; name: string; node: string; state: string; pid: number | null; pending: string | null };
type Ev = { type: string; node: string; subject: string; data: Record<string, unknown> };
const COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"];

describe.skipIf(skip)("pod migration on a JetStream cluster", () => {
  let h: ClusterDaemons;
  let sessions: ProcSession[];
  const suffix = randomBytes(2).toString("hex");
  const names = [`p1x${suffix}`, `p2x${suffix}`];
  const cmd = (verb: string, body: unknown, timeoutMs = 60_000, via?: string) => h.cmd(verb, body, timeoutMs, via);
  const http = async <T>(s: ProcSession, path: string) => (await s.http<T>(path)).body;
  const counter = async (id: string, via?: string) => {
    const r = await cmd("exec", { id, cmd: ["sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done"], timeoutSec: 10 }, 30_000, via);
    if (r.error) throw new Error(`exec: ${r.error.code}: ${r.error.message}`);
    return Number((r.result as { stdout: string }).stdout.trim() || "0");
  };
  /** Nothing of container `id` on `s`'s host: no bundle dir, no mount, no runc state. */
  const sandboxes = (s: ProcSession) => (existsSync(join(s.dataRoot, "sandboxes")) ? readdirSync(join(s.dataRoot, "sandboxes")) : []);
  const podEvents = async (s: ProcSession, id: string) => (await http<{ events: Ev[] }>(s, "/v1/events?type=PodMigrationRequested,PodMigrationDumped,PodMigrationRestoreFailed,PodMigrated,PodMigrationFailed")).events.filter((e) => e.subject === `berth.ev.pod.${id}`);

  /** A pod on node `on` with two counting members, counting. */
  async function makePod(name: string, on: string) {
    const p = await cmd("pod.create", { name, node: on }, 60_000, on);
    expect(p.error).toBeUndefined();
    const ids: string[] = [];
    for (const m of ["a", "b"]) {
      const r = await cmd("run", { name: `${name}-${m}`, pod: name, image: "busybox", cmd: COUNTER, node: on }, 60_000, on);
      expect(r.error).toBeUndefined();
      ids.push(r.result!.id as string);
    }
    for (const id of ids) await until(async () => (await counter(id)) >= 5, 15_000);
    return { id: p.result!.id as string, members: ids };
  }

  beforeAll(async () => {
    h = await startClusterDaemons(names);
    sessions = h.sessions;
  }, 120_000);
  afterAll(async () => {
    for (const s of sessions ?? []) {
      if (!s.d) continue;
      for (const p of (await http<{ pods: Pod[] }>(s, "/v1/pods").catch(() => ({ pods: [] as Pod[] }))).pods) {
        if (p.node === s.node) await cmd("pod.remove", { id: p.id, force: true }, 60_000, s.node).catch(() => undefined);
      }
    }
    await h?.stop();
  }, 180_000);

  it("pod migrate: both members go on counting on n2 with their ids and names, in n2's subnet; n1 keeps nothing", async () => {
    const { id, members } = await makePod(`app-${suffix}`, names[0]);
    const before = await http<Pod>(sessions[0], `/v1/pods/${id}`);
    const pids = await Promise.all(members.map(async (m) => (await http<C>(sessions[0], `/v1/containers/${m}`)).pid!));
    // Sent through the queue group: whichever daemon takes it hands it to the pod's own.
    const r = await cmd("pod.migrate", { id: `app-${suffix}`, targetNode: names[1] }, 300_000);
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ id, node: names[1] });
    expect(r.result!.downtimeMs).toBeGreaterThan(0);
    for (const s of sessions) {
      const p = await http<Pod>(s, `/v1/pods/${id}`);
      expect(p).toMatchObject({ id, node: names[1], state: "running", pending: null, lastError: null });
      for (const m of members) expect(await http<C>(s, `/v1/containers/${m}`)).toMatchObject({ id: m, node: names[1], state: "running", pending: null });
    }
    const after = await http<Pod>(sessions[1], `/v1/pods/${id}`);
    expect(after.ip).toBeTruthy();
    expect(after.ip!.split(".").slice(0, 3)).not.toEqual(before.ip!.split(".").slice(0, 3));
    // Each counts on from where it was (not from 1), in a new process on n2.
    for (const m of members) {
      const n = await counter(m);
      expect(n).toBeGreaterThanOrEqual(5);
      await until(async () => (await counter(m)) > n, 10_000);
      expect(existsSync(join(sessions[1].dataRoot, "runc", m))).toBe(true);
    }
    for (const pid of pids) expect(alive(pid)).toBe(false);
    // n1 keeps nothing: no member's bundle, mount or runc state, no pod sandbox.
    for (const m of members) {
      expect(await leftAfterCleanup(sessions[0], m)).toEqual(NOTHING_LEFT);
    }
    await until(async () => !sandboxes(sessions[0]).includes(id), 10_000).catch(() => undefined);
    expect(sandboxes(sessions[0])).not.toContain(id);
    expect(sandboxes(sessions[1])).toContain(id);
    // The log says what happened: the pod's saga, and each member's move.
    const evs = await podEvents(sessions[0], id);
    expect(evs.map((e) => e.type)).toEqual(["PodMigrationRequested", "PodMigrationDumped", "PodMigrated"]);
    expect(evs[2]).toMatchObject({ node: names[1], data: { fromNode: names[0], toNode: names[1], containers: members } });
    for (const m of members) {
      const { events } = await http<{ events: Ev[] }>(sessions[0], `/v1/containers/${m}/events`);
      expect(events.find((e) => e.type === "ContainerMigrated")).toMatchObject({ node: names[1], data: { fromNode: names[0], toNode: names[1], pod: id } });
    }
    // From now on n2 acts on it: whichever daemon takes a pod command hands it to n2's.
    expect((await cmd("pod.stop", { id, timeoutSec: 1 })).error).toBeUndefined();
    for (const m of members) expect(await http<C>(sessions[1], `/v1/containers/${m}`)).toMatchObject({ state: "exited", node: names[1] });
    expect((await cmd("pod.remove", { id, force: true })).error).toBeUndefined();
    expect(sandboxes(sessions[1])).not.toContain(id);
  }, 300_000);

  it("pod migrate refuses what it cannot do, and nothing moves", async () => {
    const { id, members } = await makePod(`stay-${suffix}`, names[0]);
    const half = await makePod(`half-${suffix}`, names[0]);
    expect((await cmd("stop", { id: half.members[1], timeoutSec: 1 })).error).toBeUndefined();
    const cases: [unknown, string, RegExp][] = [
      [{ id, targetNode: "nosuchnode" }, "InvalidArgument", /unknown node 'nosuchnode'/],
      [{ id, targetNode: names[0] }, "Conflict", new RegExp(`on node ${names[0]} already`)],
      [{ id: half.id, targetNode: names[1] }, "Conflict", /member half-.*-b is exited: a pod migrates when every member runs/],
      [{ id: `nopod-${suffix}`, targetNode: names[1] }, "NotFound", /no pod/],
      [{ id, targetNode: "../x" }, "InvalidArgument", /targetNode/],
      [{ id, targetNode: names[1], bogus: 1 }, "InvalidArgument", /unknown field 'bogus'/],
      [{ targetNode: names[1] }, "InvalidArgument", /id/],
    ];
    for (const [body, code, msg] of cases) {
      const r = await cmd("pod.migrate", body);
      expect(r.error?.code, JSON.stringify(body)).toBe(code);
      expect(r.error?.message).toMatch(msg);
    }
    expect(await podEvents(sessions[0], id)).toEqual([]);
    expect(await podEvents(sessions[0], half.id)).toEqual([]);
    for (const m of members) expect(await http<C>(sessions[0], `/v1/containers/${m}`)).toMatchObject({ node: names[0], state: "running" });
    for (const p of [id, half.id]) expect((await cmd("pod.remove", { id: p, force: true })).error).toBeUndefined();
  }, 120_000);

  it("pod migrate: the target cannot restore it, so the source restores it from the same checkpoint (compensated)", async () => {
    await sessions[1].down();
    await sessions[1].up({ BERTH_FAIL: "migrate-restore" });
    try {
      const { id, members } = await makePod(`back-${suffix}`, names[0]);
      const before = await http<Pod>(sessions[0], `/v1/pods/${id}`);
      const r = await cmd("pod.migrate", { id, targetNode: names[1] }, 300_000);
      expect(r.error?.code).toBe("RuntimeError");
      expect(r.error?.message).toMatch(new RegExp(`migration failed, the pod runs on ${names[0]} again.*injected failure at migrate-restore`));
      const p = await http<Pod>(sessions[0], `/v1/pods/${id}`);
      expect(p).toMatchObject({ node: names[0], state: "running", pending: null, ip: before.ip, lastError: expect.stringMatching(/migration: .*migrate-restore/) });
      for (const m of members) {
        expect(await http<C>(sessions[0], `/v1/containers/${m}`)).toMatchObject({ node: names[0], state: "running", pending: null });
        expect(await counter(m)).toBeGreaterThanOrEqual(5);
        expect(await leftAfterCleanup(sessions[1], m)).toEqual(NOTHING_LEFT);
      }
      expect(sandboxes(sessions[1])).not.toContain(id);
      const evs = await podEvents(sessions[0], id);
      expect(evs.map((e) => e.type)).toEqual(["PodMigrationRequested", "PodMigrationDumped", "PodMigrationRestoreFailed", "PodMigrationFailed"]);
      expect(evs[3]).toMatchObject({ node: names[0], data: { node: names[0], compensated: true } });
      expect((await cmd("pod.remove", { id, force: true })).error).toBeUndefined();
    } finally {
      await sessions[1].down();
      await sessions[1].up();
    }
  }, 300_000);

  it("the target dies after restoring the members and stays down: with a takeover time the source restores the pod; the target, back, removes its copies", async () => {
    await sessions[0].down();
    await sessions[0].up({ BERTH_MIGRATION_TAKEOVER_MS: "2000" });
    await sessions[1].down();
    await sessions[1].up({ BERTH_FAULT: "migrate-restored:1" });
    try {
      const { id, members } = await makePod(`take-${suffix}`, names[0]);
      const r = await cmd("pod.migrate", { id, targetNode: names[1] }, 120_000, names[0]);
      expect(sessions[1].d!.child.signalCode).toBe("SIGKILL");
      expect(r.error?.code).toBe("RuntimeError");
      expect(r.error?.message).toMatch(new RegExp(`the pod runs on ${names[0]} again.*node ${names[1]} went down after the dump`));
      expect(await http<Pod>(sessions[0], `/v1/pods/${id}`)).toMatchObject({ node: names[0], state: "running", pending: null });
      for (const m of members) expect(await counter(m)).toBeGreaterThanOrEqual(5);
      await sessions[1].down();
      await sessions[1].up();
      for (const m of members) {
        expect(await leftAfterCleanup(sessions[1], m)).toEqual(NOTHING_LEFT);
      }
      await until(async () => !sandboxes(sessions[1]).includes(id), 15_000);
      expect((await cmd("pod.remove", { id, force: true })).error).toBeUndefined();
    } finally {
      await sessions[0].down();
      await sessions[0].up();
      await sessions[1].down();
      await sessions[1].up();
    }
  }, 240_000);

  // Who dies where (kill -9 through BERTH_FAULT), then comes back: the pod ends up running on
  // exactly one node, the one the log names, with every member.
  const CASES: { dies: 0 | 1; fault: string; owner: 0 | 1 }[] = [
    { dies: 0, fault: "pod-checkpoint-dumped:1", owner: 1 },
    { dies: 0, fault: "migrate-dumped:1", owner: 1 },
    { dies: 1, fault: "migrate-restored:1", owner: 1 },
  ];
  for (const c of CASES) {
    it(`${c.dies ? "target" : "source"} dies at ${c.fault}: the pod ends up running on exactly one node`, async () => {
      const dying = sessions[c.dies];
      await dying.down();
      await dying.up({ BERTH_FAULT: c.fault });
      const { id, members } = await makePod(`crash${c.dies}${CASES.indexOf(c)}-${suffix}`, names[0]);
      const reply = cmd("pod.migrate", { id, targetNode: names[1] }, 90_000, names[0]).catch(() => null);
      await Promise.race([dying.d!.exited, new Promise((r) => setTimeout(r, 60_000))]);
      expect(dying.d!.child.signalCode).toBe("SIGKILL");
      await dying.down();
      await dying.up();
      void reply;
      const owner = sessions[c.owner];
      await until(async () => {
        const p = await http<Pod>(owner, `/v1/pods/${id}`);
        if (!(p?.pending === null && p.node === names[c.owner] && p.state === "running" && (await http<Pod>(sessions[1 - c.owner], `/v1/pods/${id}`))?.node === p.node)) return false;
        // The members' own records follow the pod's.
        for (const m of members) if ((await http<C>(owner, `/v1/containers/${m}`))?.node !== names[c.owner]) return false;
        return true;
      }, 90_000);
      for (const m of members) {
        const v = await http<C>(owner, `/v1/containers/${m}`);
        expect(v).toMatchObject({ node: names[c.owner], state: "running", pending: null });
        expect(alive(v.pid!)).toBe(true);
        expect(await counter(m)).toBeGreaterThanOrEqual(5);
        expect(await leftAfterCleanup(sessions[1 - c.owner], m)).toEqual(NOTHING_LEFT);
      }
      expect((await cmd("pod.remove", { id, force: true })).error).toBeUndefined();
    }, 240_000);
  }
});
