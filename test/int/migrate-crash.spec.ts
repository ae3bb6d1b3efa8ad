// The migration's crash matrix (issue 10, story 5): on a real 3-server cluster with two daemons,
// the source (n1) is killed -9 (BERTH_FAULT) after the migration's intent, after CRIU's dump,
// after the dump is recorded and while it sends the archive to the target (the default direct
// transfer; with the object store instead, after the upload); the target (n2) while it takes
// the archive in and after it restored the container.
// The killed daemon comes back; the container then runs on exactly one node — the one the log
// names as its owner — with one process, and counts on from where it was.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, type ProcSession } from "../support/daemon-proc.js";
import { startClusterDaemons, type ClusterDaemons } from "../support/cluster-daemons.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, lazyPagesUnder, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "criu").length > 0;

type C = { id: string; node: string; state: string; pid: number | null; pending: string | null };
const COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"];

// Which daemon dies where. n1 takes the run (its start is n1's first intent) and the migration (its second).
const CASES: { dies: 0 | 1; fault: string; env?: Record<string, string> }[] = [
  { dies: 0, fault: "after-intent:2" },
  { dies: 0, fault: "checkpoint-dumped:1" },
  { dies: 0, fault: "migrate-dumped:1" },
  { dies: 0, fault: "migrate-serving:1" },
  { dies: 0, fault: "checkpoint-uploaded:1", env: { BERTH_MIGRATION_TRANSFER: "store" } },
  // The source dies once it runs on the target, before its own clean-up (bundle, mount, volume).
  { dies: 0, fault: "migrated-away:1" },
  { dies: 1, fault: "migrate-fetching:1" },
  { dies: 1, fault: "migrate-restored:1" },
  // The target dies while CRIU's lazy-pages daemon copies the restored memory in (every dump
  // restores lazily with the threshold at 0): that daemon is on its own, the copy completes.
  { dies: 1, fault: "lazy-restoring:1", env: { BERTH_LAZY_PAGES_MIN_MB: "0" } },
];

describe.skipIf(skip)("migration crash matrix", () => {
  let h: ClusterDaemons;
  let sessions: ProcSession[];
  const suffix = randomBytes(2).toString("hex");
  const names = [`m1x${suffix}`, `m2x${suffix}`];
  const send = (via: string, verb: string, body: unknown, timeoutMs = 60_000) => h.cmd(verb, body, timeoutMs, via);
  const view = async (s: ProcSession, id: string) => (await s.http<C>(`/v1/containers/${id}`)).body;
  const counter = async (via: string, id: string) => {
    const r = await send(via, "exec", { id, cmd: ["sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done"], timeoutSec: 10 }, 30_000);
    if (r.error) throw new Error(`exec: ${r.error.code}: ${r.error.message}`);
    return Number((r.result as { stdout: string }).stdout.trim() || "0");
  };

  beforeAll(async () => {
    h = await startClusterDaemons(names);
    sessions = h.sessions;
  }, 120_000);
  afterAll(async () => {
    await h?.stop();
  }, 180_000);

  for (const c of CASES) {
    it(`${names[c.dies].slice(0, 2)} dies at ${c.fault}${c.env ? ` (${Object.entries(c.env).map(([k, v]) => `${k}=${v}`).join(" ")})` : ""}: the container ends up running on exactly one node`, async () => {
      const dying = sessions[c.dies];
      await dying.down();
      await dying.up({ BERTH_FAULT: c.fault, ...c.env });
      // With a named volume whose data must move once, whatever dies.
      const vol = `crash-${suffix}-${CASES.indexOf(c)}`;
      const run = await send(names[0], "run", { image: "busybox", cmd: ["sh", "-c", `[ -f /data/f ] || echo kept > /data/f; ${COUNTER[2]}`], node: names[0], mounts: [{ type: "volume", source: vol, target: "/data" }] });
      expect(run.error).toBeUndefined();
      const id = run.result!.id as string;
      await until(async () => (await counter(names[0], id)) >= 5, 15_000);
      const before = (await view(sessions[0], id)).pid!;

      // The reply may never come (the daemon that took it dies): what counts is where it ends.
      const reply = send(names[0], "migrate", { id, targetNode: names[1] }, 90_000).catch(() => null);
      await Promise.race([dying.d!.exited, new Promise((r) => setTimeout(r, 60_000))]);
      expect(dying.d!.child.signalCode).toBe("SIGKILL");
      await dying.down();
      await dying.up(c.env);
      // A reply from the daemon that died never comes (its request times out on its own).
      void reply;

      const other = sessions[1 - c.dies];
      let settled: C | undefined;
      await until(async () => {
        const [a, b] = [await view(dying, id), await view(other, id)];
        settled = a;
        return a?.pending === null && a.state === "running" && b?.node === a.node;
      }, 60_000);
      // The saga goes forward from wherever it was: n2 owns it.
      const owner = names.indexOf(settled!.node);
      expect(settled!.node).toBe(names[1]);
      // One process, on the owner; the other node has nothing of it.
      expect(alive(settled!.pid!)).toBe(true);
      expect(alive(before)).toBe(owner === 0 ? settled!.pid === before : false);
      const notOwner = sessions[1 - owner];
      await until(async () => !existsSync(join(notOwner.dataRoot, "runc", id)) && !existsSync(join(notOwner.dataRoot, "containers", id)), 15_000);
      expect(existsSync(join(sessions[owner].dataRoot, "runc", id))).toBe(true);
      expect(await counter(names[owner], id)).toBeGreaterThanOrEqual(5);
      // Its volume is on the owner with its data, gone from the other node, and settled on both.
      expect(readFileSync(join(sessions[owner].dataRoot, "volumes", vol, "f"), "utf8")).toBe("kept\n");
      await until(async () => !existsSync(join(notOwner.dataRoot, "volumes", vol)), 15_000);
      // No lazy-pages daemon of either node outlives its restore.
      for (const s of sessions) await until(async () => lazyPagesUnder(s.dataRoot) === "", 10_000);
      for (const s of sessions) expect(existsSync(join(s.dataRoot, "volume-moves")) ? readdirSync(join(s.dataRoot, "volume-moves")) : []).toEqual([]);
      expect((await send(names[owner], "remove", { id, force: true })).error).toBeUndefined();
      // The next case starts from the default settings.
      if (c.env) {
        await dying.down();
        await dying.up();
      }
    }, 180_000);
  }

  it("the target dies after its restore and stays down: with a takeover time the source restores it; the target, back, removes its copy", async () => {
    await sessions[0].down();
    await sessions[0].up({ BERTH_MIGRATION_TAKEOVER_MS: "2000" });
    await sessions[1].down();
    await sessions[1].up({ BERTH_FAULT: "migrate-restored:1" });
    try {
      const id = (await send(names[0], "run", { image: "busybox", cmd: COUNTER, node: names[0] })).result!.id as string;
      await until(async () => (await counter(names[0], id)) >= 5, 15_000);
      const r = await send(names[0], "migrate", { id, targetNode: names[1] }, 120_000);
      expect(sessions[1].d!.child.signalCode).toBe("SIGKILL");
      // Down for its heartbeat's 10 s and the 2 s more: the source took it back.
      expect(r.error?.code).toBe("RuntimeError");
      expect(r.error?.message).toMatch(new RegExp(`it runs on ${names[0]} again.*node ${names[1]} went down after the dump`));
      const c = await view(sessions[0], id);
      expect(c).toMatchObject({ node: names[0], state: "running", pending: null });
      expect(await counter(names[0], id)).toBeGreaterThanOrEqual(5);
      // The target's copy ran on under its conmon meanwhile; its daemon, back, removes it.
      expect(existsSync(join(sessions[1].dataRoot, "runc", id))).toBe(true);
      await sessions[1].down();
      await sessions[1].up();
      await until(async () => !existsSync(join(sessions[1].dataRoot, "runc", id)) && !existsSync(join(sessions[1].dataRoot, "containers", id)), 15_000);
      expect(alive(c.pid!)).toBe(true);
      expect((await view(sessions[1], id))).toMatchObject({ node: names[0], state: "running" });
      expect((await send(names[0], "remove", { id, force: true })).error).toBeUndefined();
    } finally {
      await sessions[0].down();
      await sessions[0].up();
      await sessions[1].down();
      await sessions[1].up();
    }
  }, 240_000);
});
