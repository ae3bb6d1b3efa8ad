// The pod checkpoint's crash matrix (issue 9, stories 3 and 7): the daemon is killed -9
// (BERTH_FAULT) at each step of a pod checkpoint — its intent, a member's freeze, every member
// frozen, a member's dump, every member dumped, the record written, a member's stop — and a new
// daemon on the same data root carries the saga to its end: one pod checkpoint listed with every
// member's, the members stopped, each process gone; and the pod restores from it.
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, ProcSession } from "../support/daemon-proc.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "criu").length > 0;

type Pod = { id: string; state: string; pending: string | null; checkpointed: boolean; checkpoint: string | null; containers: { id: string; name: string; state: string }[] };
type C = { id: string; state: string; pid: number | null; pending: string | null };
type Cp = { checkpointId: string; kind: string; pod: string | null; partOf: string | null; members?: { container: string }[] };
const COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"];

// The two members' runs are the daemon's first two intents; the pod checkpoint's is the third,
// its members' freezes the 4th and 5th, their dumps the 6th and 7th, their stops the 8th and 9th.
const CASES = [
  "after-intent:3",
  "after-intent:5",
  "pod-checkpoint-frozen:1",
  "checkpoint-dumped:2",
  "pod-checkpoint-dumped:1",
  "pod-checkpoint-recorded:1",
  "after-intent:9",
];

describe.skipIf(skip)("pod checkpoint crash matrix", () => {
  let dataRoot: string;
  let session: ProcSession;
  const node = `pcc${randomBytes(3).toString("hex")}`;
  const cmd = (verb: string, body: unknown, timeoutMs?: number) => session.cmd(verb, body, timeoutMs);
  const http = async <T>(path: string) => (await session.http<T>(path)).body;
  const counter = async (id: string) => {
    const r = await cmd("exec", { id, cmd: ["sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done"], timeoutSec: 20 });
    if (r.error) throw new Error(`exec: ${r.error.code}: ${r.error.message}`);
    return Number((r.result as { stdout: string }).stdout.trim() || "0");
  };

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-podcrash-"));
    session = new ProcSession(dataRoot, node, await freePort());
  });
  afterAll(async () => {
    await session?.destroy();
  });

  for (const fault of CASES) {
    it(`a pod checkpoint dies at ${fault}, then converges`, async () => {
      const name = `p${randomBytes(3).toString("hex")}`;
      try {
        await session.up({ BERTH_FAULT: fault });
        const podId = (await cmd("pod.create", { name })).result!.id as string;
        const members: string[] = [];
        for (const m of ["a", "b"]) members.push((await cmd("run", { name: `${name}-${m}`, pod: name, image: "busybox", cmd: COUNTER })).result!.id as string);
        for (const m of members) await until(async () => (await counter(m)) >= 3, 10_000);
        const pids = await Promise.all(members.map(async (m) => (await http<C>(`/v1/containers/${m}`)).pid!));
        expect(await session.diesDuring("pod.checkpoint", { id: name }, 120_000)).toBe("died");

        const settled = await session.restartSettled<Pod>(podId, 120_000, `/v1/pods/${podId}`);
        // The saga went on to its end: one pod checkpoint with both members', the members stopped.
        const cps = (await http<{ checkpoints: Cp[] }>("/v1/checkpoints")).checkpoints;
        const mine = cps.filter((c) => c.kind === "pod" && c.pod === podId);
        expect(mine).toHaveLength(1);
        expect(mine[0].members).toHaveLength(2);
        expect(cps.filter((c) => c.partOf === mine[0].checkpointId)).toHaveLength(2);
        expect(settled).toMatchObject({ checkpointed: true, checkpoint: mine[0].checkpointId, state: "exited" });
        for (const m of members) {
          await until(async () => (await http<C>(`/v1/containers/${m}`)).pending === null, 30_000);
          expect(await http<C>(`/v1/containers/${m}`)).toMatchObject({ state: "exited" });
        }
        for (const pid of pids) expect(alive(pid)).toBe(false);
        expect(existsSync(join(dataRoot, "checkpoints")) ? readdirSync(join(dataRoot, "checkpoints")) : []).toEqual([]);

        // And it restores: both count on.
        const r = await cmd("pod.restore", { checkpointId: mine[0].checkpointId }, 120_000);
        expect(r.error).toBeUndefined();
        for (const m of members) {
          expect(await http<C>(`/v1/containers/${m}`)).toMatchObject({ state: "running" });
          // (A read can land between the shell's truncate and its write: read until it has a number.)
          await until(async () => (await counter(m)) >= 3, 10_000);
        }
        expect((await cmd("pod.remove", { id: podId, force: true }, 120_000)).error).toBeUndefined();
      } finally {
        await session.down();
      }
    });
  }
});
