// The pod checkpoint saga's pure parts: podCheckpointNext (what to do next from the members'
// states and the records the log holds), the pod decider's Checkpoint guard and evolve, the pod
// retention rule; and a property test of the saga against a simulated pod whose daemon dies
// between any two steps: it always ends with every member dumped and stopped (or thawed).
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { memberCheckpointId, podCheckpointNext, type PodCheckpointStep } from "../../src/handlers/pod-checkpoint.js";
import { podDecider, type PodCheckpointSaga, type PodState } from "../../src/aggregates/pod/index.js";
import { retire, retirePod } from "../../src/aggregates/checkpoint/index.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { PodEvent } from "../../src/events/types.js";
import { BerthError } from "../../src/shared/errors.js";

const CP = "c".repeat(64);
const A = "a".repeat(64);
const B = "b".repeat(64);
const POD = "p".repeat(64);

type M = Pick<ContainerState, "id" | "name" | "state" | "pending">;
const member = (id: string, state: ContainerState["state"], pending: M["pending"] = null): M => ({ id, name: id === A ? "a" : "b", state, pending });
const saga = (o: Partial<PodCheckpointSaga> = {}): PodCheckpointSaga => ({
  checkpointId: CP, eventId: "e1", leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [A, B], pausedBefore: [], ...o,
});
const next = (s: PodCheckpointSaga, members: M[], recorded: string[] = []): PodCheckpointStep =>
  podCheckpointNext(s, (id) => members.find((m) => m.id === id) as ContainerState | undefined, (id) => recorded.includes(id));
const dumped = (...ids: string[]) => ids.map((id) => memberCheckpointId(CP, id));

describe("podCheckpointNext: what the saga does next", () => {
  it.each<[string, PodCheckpointSaga, M[], string[], PodCheckpointStep]>([
    ["both run: freeze the first", saga(), [member(A, "running"), member(B, "running")], [], { kind: "freeze", member: A }],
    ["the first is frozen: freeze the second", saga(), [member(A, "paused"), member(B, "running")], [], { kind: "freeze", member: B }],
    ["both frozen: dump the first", saga(), [member(A, "paused"), member(B, "paused")], [], { kind: "dump", member: A }],
    ["the first dumped: dump the second", saga(), [member(A, "paused"), member(B, "paused")], dumped(A), { kind: "dump", member: B }],
    ["both dumped: record", saga(), [member(A, "paused"), member(B, "paused")], dumped(A, B), { kind: "record" }],
    ["recorded, stop: end the first", saga(), [member(A, "paused"), member(B, "paused")], [...dumped(A, B), CP], { kind: "end", member: A }],
    ["recorded, the first stopped: end the second", saga(), [member(A, "exited"), member(B, "paused")], [...dumped(A, B), CP], { kind: "end", member: B }],
    ["recorded, both stopped: done", saga(), [member(A, "exited"), member(B, "exited")], [...dumped(A, B), CP], { kind: "done" }],
    ["recorded, leave running: thaw the first", saga({ leaveRunning: true }), [member(A, "paused"), member(B, "paused")], [...dumped(A, B), CP], { kind: "thaw", member: A }],
    ["leave running: one the user had paused stays paused", saga({ leaveRunning: true, pausedBefore: [A] }), [member(A, "paused"), member(B, "running")], [...dumped(A, B), CP], { kind: "done" }],
    ["a member's own intent is pending: wait for it", saga(), [member(A, "running", { type: "ContainerPauseRequested", eventId: "x", data: {} } as M["pending"]), member(B, "running")], [], { kind: "wait", member: A }],
    ["a member exited before it was dumped: fail", saga(), [member(A, "paused"), member(B, "exited")], dumped(A), { kind: "fail", reason: "member b is exited: it stopped during the checkpoint" }],
    ["a member was removed: fail", saga(), [member(A, "paused")], [], { kind: "fail", reason: `member ${B.slice(0, 12)} was removed during the checkpoint` }],
    ["a dumped member exited by itself before the record: fail", saga(), [member(A, "exited"), member(B, "paused")], dumped(A, B), { kind: "fail", reason: "member a is exited: it stopped during the checkpoint" }],
  ])("given %s", (_what, s, members, recorded, want) => {
    expect(next(s, members, recorded)).toEqual(want);
  });

  it("names each member's checkpoint after the pod checkpoint and the member, the same every time", () => {
    expect(memberCheckpointId(CP, A)).toMatch(/^[0-9a-f]{64}$/);
    expect(memberCheckpointId(CP, A)).toBe(memberCheckpointId(CP, A));
    expect(memberCheckpointId(CP, A)).not.toBe(memberCheckpointId(CP, B));
  });
});

describe("the pod decider's checkpoint", () => {
  let seq = 0;
  const fold = (events: { type: string; data: unknown }[]): PodState | null =>
    events.reduce<PodState | null>((s, e) => podDecider.evolve(s, { ...e, v: 1, eventId: `e${++seq}`, at: "2026-12-01T00:00:00Z", node: "n1", actor: "t", correlationId: "c", causationId: null, seq, subject: `berth.ev.pod.${POD}` } as PodEvent & { seq: number; subject: string }), null);
  const created = { type: "PodCreated", data: { id: POD, name: "app", node: "n1", spec: { name: "app" } } };
  const cmd = { type: "Checkpoint" as const, checkpointId: CP, options: { leaveRunning: false, tcpEstablished: false, fileLocks: false }, members: [A, B], pausedBefore: [] };

  it("given a pod, when checkpointed, then the intent lists its members and the saga is under way", () => {
    const s = fold([created]);
    const [e] = podDecider.decide(cmd, s);
    expect(e).toEqual({ type: "PodCheckpointRequested", data: { checkpointId: CP, leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [A, B], pausedBefore: [] } });
    expect(fold([created, e])?.checkpoint).toMatchObject({ checkpointId: CP, members: [A, B] });
  });

  it("given a checkpoint under way, when another is asked, then Conflict; and one with no member is Conflict too", () => {
    const s = fold([created, { type: "PodCheckpointRequested", data: { checkpointId: CP, leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [A], pausedBefore: [] } }]);
    expect(() => podDecider.decide({ ...cmd, checkpointId: "d".repeat(64) }, s)).toThrow(/under way/);
    expect(() => podDecider.decide({ ...cmd, members: [] }, fold([created]))).toThrow(BerthError);
  });

  it("given PodCheckpointed without leaveRunning, then the pod is checkpointed until it starts or is restored", () => {
    const req = { type: "PodCheckpointRequested", data: { checkpointId: CP, leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [A], pausedBefore: [] } };
    const done = fold([created, req, { type: "PodCheckpointed", data: { checkpointId: CP, leaveRunning: false } }]);
    expect(done).toMatchObject({ checkpoint: null, checkpointed: CP });
    expect(podDecider.evolve(done, { type: "PodRestored", data: { checkpointId: CP, containers: [A] }, seq: 99, subject: "" } as never)).toMatchObject({ checkpointed: null });
    const failed = fold([created, req, { type: "PodCheckpointFailed", data: { checkpointId: CP, reason: "criu" } }]);
    expect(failed?.checkpointed ?? null).toBeNull();
    expect(failed).toMatchObject({ checkpoint: null, checkpointFailed: { checkpointId: CP, reason: "criu" } });
  });

  it("refuses an outcome for a checkpoint that is not under way", () => {
    const s = fold([created]);
    expect(podDecider.refuses(s, { type: "PodCheckpointed", data: { checkpointId: CP, leaveRunning: false } } as PodEvent)).toMatch(/not the one under way/);
  });

  it("does not own PodCheckpointCreated: that is the checkpoint record's", () => {
    expect(podDecider.owns("PodCheckpointCreated")).toBe(false);
    expect(podDecider.owns("PodCheckpointRequested")).toBe(true);
  });
});

describe("retention of pod checkpoints", () => {
  const rec = (id: string, version: number, o: Record<string, unknown> = {}) => ({ id, version, removed: false, ...o });
  it("keeps a pod's newest three; the members of a pod checkpoint are not counted as their containers' own", () => {
    const all = [
      rec("p1", 1, { kind: "pod", pod: POD }), rec("p2", 5, { kind: "pod", pod: POD }), rec("p3", 9, { kind: "pod", pod: POD }), rec("p4", 13, { kind: "pod", pod: POD }),
      rec("m1", 0, { container: A, partOf: "p1" }), rec("m2", 4, { container: A, partOf: "p2" }), rec("m3", 8, { container: A, partOf: "p3" }), rec("m4", 12, { container: A, partOf: "p4" }),
      rec("own", 20, { container: A }),
    ];
    expect(retirePod(all, POD)).toEqual(["p1"]);
    expect(retire(all, A)).toEqual([]);
  });
});

/**
 * The saga against a simulated pod: each step changes the members as the host would. A daemon
 * that dies between two steps keeps nothing in memory the next one needs (podCheckpointNext reads
 * the log only), so a run from any point is this same walk. Whatever the options and the members
 * the user had paused, it ends done, every member dumped once, each in the state asked for.
 */
describe("the saga walked from the log (property)", () => {
  it("always ends with every member dumped once and in the state asked for", () => {
    fc.assert(
      fc.property(fc.boolean(), fc.subarray([A, B]), (leaveRunning, pausedBefore) => {
        const s = saga({ leaveRunning, pausedBefore });
        const members: M[] = [member(A, pausedBefore.includes(A) ? "paused" : "running"), member(B, pausedBefore.includes(B) ? "paused" : "running")];
        const recorded = new Set<string>();
        const dumps = new Map<string, number>();
        for (let steps = 0; steps < 100; steps++) {
          const step = next(s, members, [...recorded]);
          if (step.kind === "done") break;
          const m = "member" in step ? members.find((x) => x.id === step.member)! : null;
          switch (step.kind) {
            case "freeze": m!.state = "paused"; break;
            case "dump": recorded.add(memberCheckpointId(CP, m!.id)); dumps.set(m!.id, (dumps.get(m!.id) ?? 0) + 1); break;
            case "record": recorded.add(CP); break;
            case "end": m!.state = "exited"; break;
            case "thaw": m!.state = "running"; break;
            default: throw new Error(`unexpected ${step.kind}`);
          }
        }
        expect(next(s, members, [...recorded]).kind).toBe("done");
        expect([...dumps.values()]).toEqual([1, 1]);
        for (const m of members) {
          expect(m.state).toBe(leaveRunning ? (pausedBefore.includes(m.id) ? "paused" : "running") : "exited");
        }
      }),
    );
  });
});
