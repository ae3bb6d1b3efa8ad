// Pod checkpoints with real CRIU (issue 9's story 3): every member of a pod frozen at one point,
// dumped, stopped (or left running); one PodCheckpointCreated listing the members' checkpoints;
// a pod restore into the pod, into a pod recreated with its IP after it was removed, and into a
// second pod under a new name; a member CRIU cannot dump leaves every member as it was.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image", "cni", "criu").length > 0;

type Member = { id: string; name: string; state: string };
type Pod = { id: string; name: string; state: string; ip: string | null; containers: Member[]; checkpointed: boolean; checkpoint: string | null; version: number };
type C = { id: string; name: string; state: string; pid: number | null; ip: string | null; exitCode: number | null; pending: string | null };
type Cp = { checkpointId: string; kind: string; container: string | null; pod: string | null; podName: string | null; partOf: string | null; members?: { container: string; name: string; checkpointId: string }[]; sizeBytes: number; frozenMs: number; restores: number };
type Ev = { type: string; seq: number; subject: string; data: Record<string, unknown> };

// The members talk through a volume they share: `a` counts into /talk/a, `b` copies what it reads
// there into /talk/b. Both also count in their own rw layer.
const A = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /talk/a; echo $i > /tmp/n; sleep 0.1; done"];
const B = ["sh", "-c", "j=0; while true; do j=$((j+1)); cat /talk/a > /talk/b 2>/dev/null; echo $j > /tmp/n; sleep 0.1; done"];
/** CRIU 4.1 on Linux ≥ 6.16: every INET socket's dump fails on SO_PASSCRED (1:16) / SO_PASSSEC (1:34). */
const KERNEL_SOCKOPT_BUG = /Can't get 1:(16|34) opt: Operation not supported/;

describe.skipIf(skip)("pod checkpoint and restore with CRIU", () => {
  let d: TestDaemon;
  const third = 100 + Math.floor(Math.random() * 150);
  const pod = (ref: string) => d.get<Pod>(`/v1/pods/${ref}`);
  const get = (ref: string) => d.get<C>(`/v1/containers/${ref}`);
  const read = async (ref: string, file: string) => {
    const r = await d.cmd<{ stdout: string; exitCode: number }>("container.exec", { id: ref, cmd: ["sh", "-c", `while :; do v=$(cat ${file} 2>/dev/null); [ -n "$v" ] && exec echo $v; sleep 0.05; done`], timeoutSec: 20 });
    expect(r.error).toBeUndefined();
    return Number(r.result!.stdout.trim() || "0");
  };
  const list = async () => (await d.get<{ checkpoints: Cp[] }>("/v1/checkpoints")).checkpoints;
  const podEvents = async (id: string, types: string) => (await d.get<{ events: Ev[] }>(`/v1/events?type=${types}`)).events.filter((e) => e.subject === `berth.ev.pod.${id}`);
  const checkpoint = (body: Record<string, unknown>) =>
    d.cmd<{ id: string; checkpointId: string; sizeBytes: number; durationMs: number; frozenMs: number; members: { container: string; checkpointId: string }[] }>("pod.checkpoint", body, 300_000);
  const restore = (body: Record<string, unknown>) => d.cmd<{ id: string; name: string; state: string; containers: string[] }>("pod.restore", body, 300_000);

  async function makePod(name: string) {
    expect((await d.cmd("pod.create", { name })).error).toBeUndefined();
    for (const [m, cmd] of [["a", A], ["b", B]] as const) {
      const r = await d.cmd("container.run", { name: `${name}-${m}`, pod: name, image: "busybox:latest", cmd, mounts: [{ type: "volume", source: `${name}-talk`, target: "/talk" }] });
      expect(r.error).toBeUndefined();
    }
    await until(async () => (await read(`${name}-b`, "/talk/b")) >= 5, 15_000);
  }

  beforeAll(async () => {
    d = await startTestDaemon({ subnet: `10.89.${third}.0/24` });
  });
  afterAll(async () => {
    if (d) for (const p of (await d.get<{ pods: Pod[] }>("/v1/pods")).pods) await d.cmd("pod.remove", { id: p.id, force: true });
    await d?.destroy();
  });

  it("freezes every member, dumps each, stops the pod; pod restore brings every member back where it was, on its IP", async () => {
    await makePod("app");
    const before = await pod("app");
    const pids = await Promise.all(before.containers.map(async (m) => (await get(m.id)).pid!));

    const cp = await checkpoint({ id: "app" });
    expect(cp.error).toBeUndefined();
    expect(cp.result!.checkpointId).toMatch(/^[0-9a-f]{64}$/);
    expect(cp.result!.members).toHaveLength(2);
    expect(cp.result!.frozenMs).toBeGreaterThan(0);
    const after = await pod("app");
    expect(after).toMatchObject({ state: "exited", checkpointed: true, checkpoint: cp.result!.checkpointId });
    for (const m of after.containers) expect(await get(m.id)).toMatchObject({ state: "exited", exitCode: 137, pending: null });
    for (const pid of pids) expect(alive(pid)).toBe(false);

    // One record for the pod listing its members' checkpoints, each of them kept as part of it.
    const all = await list();
    const rec = all.find((c) => c.checkpointId === cp.result!.checkpointId)!;
    expect(rec).toMatchObject({ kind: "pod", pod: before.id, podName: "app", container: null });
    expect(rec.members!.map((m) => m.name).sort()).toEqual(["app-a", "app-b"]);
    for (const m of rec.members!) expect(all.find((c) => c.checkpointId === m.checkpointId)).toMatchObject({ kind: "container", partOf: rec.checkpointId, pod: before.id });
    expect(rec.sizeBytes).toBe(rec.members!.reduce((n, m) => n + all.find((c) => c.checkpointId === m.checkpointId)!.sizeBytes, 0));

    // No member ran while another was dumped: every freeze comes before the first dump, and every
    // member's exit after the last one.
    const evs = (await Promise.all(before.containers.map(async (m) => (await d.get<{ events: Ev[] }>(`/v1/containers/${m.id}/events`)).events))).flat();
    const seqs = (t: string) => evs.filter((e) => e.type === t).map((e) => e.seq);
    expect(Math.max(...seqs("ContainerPaused"))).toBeLessThan(Math.min(...seqs("ContainerCheckpointRequested")));
    expect(Math.max(...seqs("ContainerCheckpointed"))).toBeLessThan(Math.min(...seqs("ContainerExited")));
    const lastA = await lastLogged(before.containers.find((m) => m.name === "app-a")!.id);

    const r = await restore({ checkpointId: cp.result!.checkpointId.slice(0, 12) });
    expect(r.error).toBeUndefined();
    expect(r.result).toMatchObject({ id: before.id, name: "app", state: "running" });
    const back = await pod("app");
    expect(back).toMatchObject({ state: "running", checkpointed: false, ip: before.ip });
    // They count on from where they were, and go on talking through the volume.
    const n = await read("app-a", "/tmp/n");
    expect(n).toBeGreaterThanOrEqual(lastA);
    expect(n).toBeLessThan(lastA + 100);
    await until(async () => (await read("app-b", "/talk/b")) > lastA, 10_000);
    expect((await list()).find((c) => c.checkpointId === cp.result!.checkpointId)?.restores).toBe(1);
  });

  /** A stopped member's counter as it was frozen: the file in its rw layer, read on the host. */
  async function lastLogged(id: string): Promise<number> {
    return Number(readFileSync(join(d.dataRoot, "containers", id, "upper", "tmp", "n"), "utf8").trim());
  }

  it("with leaveRunning the members run on (same processes); a restore under a new name is a second pod with a new IP", async () => {
    const first = await pod("app");
    const pids = await Promise.all(first.containers.map(async (m) => (await get(m.id)).pid!));
    const cp = await checkpoint({ id: "app", leaveRunning: true });
    expect(cp.error).toBeUndefined();
    expect(await pod("app")).toMatchObject({ state: "running", checkpointed: false });
    for (const [i, m] of first.containers.entries()) expect(await get(m.id)).toMatchObject({ state: "running", pid: pids[i] });

    const r = await restore({ checkpointId: cp.result!.checkpointId, name: "app2" });
    expect(r.error).toBeUndefined();
    const second = await pod("app2");
    expect(second.id).not.toBe(first.id);
    expect(second.state).toBe("running");
    expect(second.ip).not.toBe(first.ip);
    expect(second.containers.map((m) => m.name).sort()).toEqual(["app2-app-a", "app2-app-b"]);
    expect(await read("app2-app-a", "/tmp/n")).toBeGreaterThan(1);
    expect((await d.cmd("pod.remove", { id: "app2", force: true })).error).toBeUndefined();
  });

  it("restores a pod that was removed: the pod comes back by its name, with its IP and its members", async () => {
    const first = await pod("app");
    const cp = await checkpoint({ id: "app" });
    expect(cp.error).toBeUndefined();
    expect((await d.cmd("pod.remove", { id: "app", force: true })).error).toBeUndefined();
    const r = await restore({ checkpointId: cp.result!.checkpointId });
    expect(r.error).toBeUndefined();
    const again = await pod("app");
    expect(again.id).not.toBe(first.id);
    expect(again).toMatchObject({ name: "app", state: "running", ip: first.ip });
    expect(again.containers.map((m) => m.name).sort()).toEqual(["app-a", "app-b"]);
    expect(await read("app-a", "/tmp/n")).toBeGreaterThan(1);
  });

  it("a member CRIU cannot dump fails the pod checkpoint with CRIU's reason; every member runs on as it was", async () => {
    const r0 = await d.cmd("container.run", { name: "app-nc", pod: "app", image: "busybox:latest", cmd: ["sh", "-c", "sleep 100000 | nc -l -p 9000"] });
    expect(r0.error).toBeUndefined();
    // A member paused by its user before the checkpoint stays paused after it.
    expect((await d.cmd("container.pause", { id: "app-b" })).error).toBeUndefined();
    const before = await pod("app");
    const pids = new Map(await Promise.all(before.containers.map(async (m) => [m.id, (await get(m.id)).pid!] as const)));
    const kept = (await list()).length;

    const cp = await checkpoint({ id: "app" });
    expect(cp.error?.code).toBe("RuntimeError");
    // These machines' kernel makes CRIU fail on any INET socket; elsewhere, the listening socket
    // needs nothing special, and the checkpoint would succeed: then there is nothing to check here.
    if (!cp.error) return;
    expect(cp.error.message).toMatch(/app-nc/);
    expect(cp.error.message).toMatch(KERNEL_SOCKOPT_BUG);
    const after = await pod("app");
    expect(after).toMatchObject({ state: "running", checkpointed: false });
    for (const m of after.containers) {
      expect(await get(m.id)).toMatchObject({ state: m.name === "app-b" ? "paused" : "running", pid: pids.get(m.id), pending: null });
    }
    // The members it dumped before failing are not kept; the pod's log says why it failed.
    expect((await list()).length).toBe(kept);
    const saga = await podEvents(after.id, "PodCheckpointRequested,PodCheckpointed,PodCheckpointFailed");
    expect(saga.at(-1)).toMatchObject({ type: "PodCheckpointFailed", data: { reason: expect.stringMatching(KERNEL_SOCKOPT_BUG) } });
    expect((await d.cmd("container.unpause", { id: "app-b" })).error).toBeUndefined();
    expect((await d.cmd("container.remove", { id: "app-nc", force: true })).error).toBeUndefined();
  });

  it("keeps the newest few pod checkpoints; checkpoint rm of a pod checkpoint removes its members' too", async () => {
    const made: string[] = [];
    for (let i = 0; i < 4; i++) {
      const cp = await checkpoint({ id: "app", leaveRunning: true });
      expect(cp.error).toBeUndefined();
      made.push(cp.result!.checkpointId);
    }
    const p = await pod("app");
    const mine = (await list()).filter((c) => c.kind === "pod" && c.pod === p.id);
    expect(mine.map((c) => c.checkpointId)).toEqual(made.slice(1));
    // The retired one's members went with it.
    expect((await list()).filter((c) => c.partOf === made[0])).toEqual([]);
    expect((await d.cmd("checkpoint.remove", { checkpointId: made[1] })).error).toBeUndefined();
    expect((await list()).filter((c) => c.checkpointId === made[1] || c.partOf === made[1])).toEqual([]);
  });

  it("bad input: clear errors, nothing changes", async () => {
    const p = await pod("app");
    const cps = await list();
    const podCp = cps.find((c) => c.kind === "pod" && c.pod === p.id)!;
    const member = cps.find((c) => c.partOf === podCp.checkpointId)!;
    const cases: [string, Record<string, unknown>, string, RegExp][] = [
      ["pod.restore", { checkpointId: member.checkpointId }, "InvalidArgument", /a container's: restore it with restore/],
      ["container.restore", { checkpointId: podCp.checkpointId }, "InvalidArgument", /a pod's: restore it with pod restore/],
      ["pod.restore", { checkpointId: podCp.checkpointId }, "Conflict", /is running: stop the pod first/],
      ["pod.restore", { checkpointId: "abcdef0123" }, "NotFound", /checkpoint/],
      ["pod.restore", { checkpointId: podCp.checkpointId, name: "app" }, "AlreadyExists", /pod name 'app'/],
      ["pod.restore", { checkpointId: podCp.checkpointId, name: "../x" }, "InvalidArgument", /name/],
      ["pod.checkpoint", { id: "app", preDump: true }, "InvalidArgument", /unknown field 'preDump'/],
      ["pod.checkpoint", { id: "no-such-pod" }, "NotFound", /no pod/],
    ];
    for (const [verb, body, code, msg] of cases) {
      const r = await d.cmd(verb, body);
      expect(r.error?.code, `${verb} ${JSON.stringify(body)}`).toBe(code);
      expect(r.error?.message).toMatch(msg);
    }
    expect(await pod("app")).toMatchObject({ version: p.version });
    expect(await list()).toEqual(cps);
    // A pod with no running member has nothing to checkpoint.
    expect((await d.cmd("pod.create", { name: "idle" })).error).toBeUndefined();
    expect((await checkpoint({ id: "idle" })).error).toMatchObject({ code: "Conflict", message: expect.stringMatching(/no running container/) });
    expect(await pod("app")).toMatchObject({ state: "running" });
  });
});
