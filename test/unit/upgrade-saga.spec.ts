// The upgrade saga (aggregates/container/upgrade.ts): upgradeNext and finish from states folded
// out of real events (evolve), the decider's Upgrade and Rollback guards, and a property test of
// the saga against a tiny simulated host that crashes between a host action and its record.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { decide, type ContainerCommand, type NewEvent } from "../../src/aggregates/container/decider.js";
import { evolve, revisionOf, type ContainerState } from "../../src/aggregates/container/state.js";
import { finish, keptAfter, keptDuring, mergeUpgrade, upgradeNext, type UpgradeStep } from "../../src/aggregates/container/upgrade.js";
import { nextState } from "../../src/aggregates/container/transitions.js";
import type { ContainerEvent } from "../../src/events/types.js";
import type { ImageConfig } from "../../src/shared/host-facts.js";
import type { ContainerSpec } from "../../src/shared/spec.js";
import { BerthError } from "../../src/shared/errors.js";

const ID = "a".repeat(64);
/** The rw layers a settled container keeps: its revision's and the previous one's. */
const kept = (s: Pick<ContainerState, "revision" | "previous">) => (s.previous ? [s.revision, s.previous.revision] : [s.revision]);
const T0 = Date.UTC(2026, 10, 22);
const iso = (ms: number) => new Date(ms).toISOString();
const digest = (c: string) => "sha256:" + c.repeat(64);

// --- events ------------------------------------------------------------------------------------
type Ev<T extends NewEvent["type"]> = Extract<NewEvent, { type: T }>;

const SPEC1: ContainerSpec = { image: "app:v1", cmd: ["serve"], network: { mode: "none" } };
const SPEC2: ContainerSpec = { image: "app:v2", cmd: ["serve"], network: { mode: "none" } };
const D1 = digest("1");
const D2 = digest("2");

const created = (spec: ContainerSpec = SPEC1, imageDigest = D1): NewEvent => ({
  type: "ContainerCreated",
  data: { id: ID, name: "web", image: spec.image, imageDigest, node: "n1", spec },
});
const startReq: NewEvent = { type: "ContainerStartRequested", data: {} };
const started = (atMs: number, pid = 42): NewEvent => ({ type: "ContainerStarted", data: { pid, startedAt: iso(atMs) } });
const exited = (code = 0, atMs = T0): NewEvent => ({ type: "ContainerExited", data: { exitCode: code, oomKilled: false, exitedAt: iso(atMs) } });
const health = (status: "starting" | "healthy" | "unhealthy"): NewEvent => ({ type: "ContainerHealthChanged", data: { status, failingStreak: status === "unhealthy" ? 3 : 0 } });
const upgradeReq = (revision = 1, healthGateSec = 5, spec = SPEC2, imageDigest = D2): NewEvent => ({
  type: "ContainerUpgradeRequested",
  data: { revision, image: spec.image, imageDigest, spec, healthGateSec },
});
const rollbackReq = (revision: number): NewEvent => ({ type: "ContainerRollbackRequested", data: { revision } });
const activated = (revision: number): NewEvent => ({ type: "ContainerRevisionActivated", data: { revision } });
const upgradeFailed = (reason: string): NewEvent => ({ type: "ContainerUpgradeFailed", data: { reason } });

let seq = 0;
function envelope(e: NewEvent, atMs: number): ContainerEvent & { seq: number } {
  seq++;
  return { ...e, v: 1, eventId: `e${seq}`, at: iso(atMs), node: "n1", actor: "berth/n1", correlationId: "c", causationId: null, seq } as ContainerEvent & { seq: number };
}

/** The state the log gives after these events (one second apart from T0). */
function fold(...events: NewEvent[]): ContainerState {
  seq = 0;
  let s: ContainerState | null = null;
  events.forEach((e, i) => (s = evolve(s, envelope(e, T0 + i * 1000))));
  return s!;
}

// --- upgradeNext ---------------------------------------------------------------------------------
const OLD_AT = T0 + 10_000;
const NEW_AT = T0 + 60_000;
const GATE_END = NEW_AT + 5_000;

const running = [created(), startReq, started(OLD_AT)];
const stoppedForUpgrade = [...running, upgradeReq(1, 5), exited(143)];
const onNew = [...stoppedForUpgrade, activated(1)];
const newUp = [...onNew, started(NEW_AT, 43)];
const failedUp = [...newUp, upgradeFailed("the new revision turned unhealthy within its health gate")];
const backOnOld = [...failedUp, exited(143), activated(0)];
const upgradedEvent: Ev<"ContainerUpgraded"> = {
  type: "ContainerUpgraded",
  data: { fromImage: "app:v1", fromDigest: D1, toImage: "app:v2", toDigest: D2, revision: 1 },
};
const settled = [...newUp, upgradedEvent];

const rev = (revision: number, image: string) => expect.objectContaining({ revision, image });
const rolledBack = (reason: string, revision: number, fromRevision: number, image = "app:v1", imageDigest = D1) => ({
  kind: "finish",
  event: { type: "ContainerUpgradeRolledBack", data: { reason, revision, image, imageDigest, fromRevision } },
});

type Row = { given: string; log: NewEvent[]; now?: number; then: UpgradeStep | null | Record<string, unknown> };
const rows: Row[] = [
  { given: "no saga", log: running, then: null },
  // An upgrade of a running container.
  { given: "a running container and an upgrade requested", log: [...running, upgradeReq()], then: { kind: "stop", stage: rev(1, "app:v2") } },
  { given: "the old revision stopped", log: stoppedForUpgrade, then: { kind: "activate", revision: rev(1, "app:v2") } },
  { given: "the new revision activated", log: onNew, then: { kind: "start" } },
  { given: "the new revision up, within its gate", log: newUp, now: NEW_AT + 1_000, then: { kind: "gate", untilMs: GATE_END } },
  { given: "the new revision up and healthy, within its gate (healthy does not end the gate early)", log: [...newUp, health("healthy")], now: NEW_AT + 1_000, then: { kind: "gate", untilMs: GATE_END } },
  { given: "the new revision up past its gate", log: newUp, now: GATE_END, then: { kind: "finish", event: upgradedEvent } },
  { given: "the new revision unhealthy within its gate", log: [...newUp, health("unhealthy")], now: NEW_AT + 1_000, then: { kind: "fail", reason: "the new revision turned unhealthy within its health gate" } },
  { given: "the new revision exited within its gate", log: [...newUp, exited(3)], now: NEW_AT + 1_000, then: { kind: "fail", reason: "the new revision exited with code 3 within its health gate" } },
  { given: "a health gate of 0s: settled as soon as it runs", log: [...running, upgradeReq(1, 0), exited(143), activated(1), started(NEW_AT, 43)], now: NEW_AT, then: { kind: "finish", event: upgradedEvent } },
  // Going back after a failure.
  { given: "the upgrade failed while the new revision runs", log: failedUp, then: { kind: "stop", stage: rev(0, "app:v1") } },
  { given: "failed, the new revision stopped", log: [...failedUp, exited(143)], then: { kind: "activate", revision: rev(0, "app:v1") } },
  { given: "failed, the old revision activated again", log: backOnOld, then: { kind: "start" } },
  { given: "failed, the old revision runs again (no gate going back)", log: [...backOnOld, started(NEW_AT + 30_000, 44)], now: NEW_AT + 30_000, then: rolledBack("the new revision turned unhealthy within its health gate", 0, 1) },
  { given: "failed, the old revision ran again and exited", log: [...backOnOld, started(NEW_AT + 30_000, 44), exited(1)], then: rolledBack("the new revision turned unhealthy within its health gate", 0, 1) },
  { given: "the new revision did not start", log: [...onNew, upgradeFailed("start: exec: no such file")], then: { kind: "activate", revision: rev(0, "app:v1") } },
  { given: "the new revision could not be activated (still on the old one)", log: [...stoppedForUpgrade, upgradeFailed("activate: no image")], then: { kind: "start" } },
  // A container that does not run: switched, never started.
  { given: "a created container and an upgrade requested", log: [created(), upgradeReq()], then: { kind: "activate", revision: rev(1, "app:v2") } },
  { given: "a created container, the new revision activated", log: [created(), upgradeReq(), activated(1)], then: { kind: "finish", event: upgradedEvent } },
  { given: "an exited container, the new revision could not be activated", log: [...running, exited(0), upgradeReq(), upgradeFailed("activate: no image")], then: rolledBack("activate: no image", 0, 1) },
  // Rollback.
  { given: "a settled upgrade of a running container and a rollback requested", log: [...settled, rollbackReq(0)], then: { kind: "stop", stage: rev(0, "app:v1") } },
  { given: "rollback, the new revision stopped", log: [...settled, rollbackReq(0), exited(143)], then: { kind: "activate", revision: rev(0, "app:v1") } },
  { given: "rollback, the old revision activated", log: [...settled, rollbackReq(0), exited(143), activated(0)], then: { kind: "start" } },
  { given: "rollback, the old revision runs (no gate)", log: [...settled, rollbackReq(0), exited(143), activated(0), started(NEW_AT + 30_000, 44)], now: NEW_AT + 30_000, then: rolledBack("requested", 0, 1) },
  { given: "rollback of an exited container, the old revision activated", log: [...settled, exited(0), rollbackReq(0), activated(0)], then: rolledBack("requested", 0, 1) },
];

describe("upgradeNext: given the state the log gives, then the next step", () => {
  it.each(rows)("given $given", ({ log, now, then }) => {
    expect(upgradeNext(fold(...log), now ?? NEW_AT)).toEqual(then);
  });
});

describe("finish: the saga's outcome", () => {
  it("given an upgrade going back whose old revision does not start, then rolled back with both reasons", () => {
    expect(finish(fold(...backOnOld), "the revision it went back to did not start: boom").data).toEqual({
      reason: "the new revision turned unhealthy within its health gate; the revision it went back to did not start: boom",
      revision: 0, image: "app:v1", imageDigest: D1, fromRevision: 1,
    });
  });

  it("given a rollback whose old revision does not start, then rolled back 'requested; why'", () => {
    const c = fold(...settled, rollbackReq(0), exited(143), activated(0));
    expect(finish(c, "boom")).toEqual(rolledBack("requested; boom", 0, 1).event);
  });

  it("given an upgrade not failed but a reason, then rolled back with that reason", () => {
    expect(finish(fold(...onNew), "boom")).toEqual(rolledBack("boom", 0, 1).event);
  });

  it("when the outcomes are folded, then the saga and its intent are over and revision/previous are right", () => {
    const up = fold(...settled);
    expect(up).toMatchObject({ upgrade: null, pending: null, revision: 1, image: "app:v2", imageDigest: D2, spec: SPEC2, previous: { revision: 0, image: "app:v1", imageDigest: D1, spec: SPEC1 } });
    expect(kept(up)).toEqual([1, 0]);

    const back = fold(...backOnOld, started(NEW_AT + 30_000, 44), finish(fold(...backOnOld, started(NEW_AT + 30_000, 44))));
    expect(back).toMatchObject({ upgrade: null, pending: null, revision: 0, image: "app:v1", spec: SPEC1, previous: null, state: "running" });
    expect(back.lastError).toMatch(/^upgrade rolled back: /);
    expect(kept(back)).toEqual([0]);

    const rb = [...settled, rollbackReq(0), exited(143), activated(0), started(NEW_AT + 30_000, 44)];
    const rolled = fold(...rb, finish(fold(...rb)));
    expect(rolled).toMatchObject({ upgrade: null, pending: null, revision: 0, image: "app:v1", previous: null, state: "running" });
  });
});

describe("keptDuring and keptAfter: the rw layers the host keeps", () => {
  const twoUp = (extra: NewEvent[] = []) => [...settled, upgradeReq(2, 5, { ...SPEC2, image: "app:v3" }, digest("3")), ...extra];
  it.each([
    { given: "an upgrade 0 → 1 in progress", log: [...running, upgradeReq()], during: [0, 1], after: [1, 0] },
    { given: "an upgrade 1 → 2 in progress (previous 0)", log: twoUp(), during: [1, 2, 0], after: [2, 1] },
    { given: "a failed upgrade 1 → 2 going back (previous 0)", log: twoUp([exited(143), upgradeFailed("activate: no image")]), during: [1, 2, 0], after: [1, 0] },
    { given: "a failed upgrade 0 → 1 going back (no previous)", log: [...stoppedForUpgrade, upgradeFailed("activate: no image")], during: [0, 1], after: [0] },
    { given: "a rollback 1 → 0", log: [...settled, rollbackReq(0)], during: [1, 0, 0], after: [0] },
  ])("given $given, then during: $during, after: $after", ({ log, during, after }) => {
    const c = fold(...log);
    expect(keptDuring(c)).toEqual(during);
    expect(keptAfter(c)).toEqual(after);
    // Nothing kept after the outcome is pruned during the saga.
    for (const r of keptAfter(c)) expect(keptDuring(c)).toContain(r);
  });
});

// --- the decider ---------------------------------------------------------------------------------
const IMG1: ImageConfig = { entrypoint: null, cmd: ["serve"], env: [], workdir: "", user: "", stopSignal: null, labels: {} };
const IMG2: ImageConfig = { ...IMG1, cmd: ["serve", "--v2"] };
const upgradeCmd = (name = "app:v2", d = D2, config = IMG2, oldImage: ImageConfig | null = IMG1): ContainerCommand => ({
  type: "Upgrade", image: { name, digest: d, config }, oldImage, changes: {}, healthGateSec: 5,
});

function when(s: ContainerState, cmd: ContainerCommand) {
  return {
    then: (events: NewEvent[]) => expect(decide(cmd, s)).toEqual(events),
    thenThrows(code: string, message: RegExp) {
      let err: unknown;
      try {
        decide(cmd, s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe(code);
      expect((err as Error).message).toMatch(message);
    },
  };
}
const requestedRevision = (s: ContainerState, cmd: ContainerCommand = upgradeCmd("app:v3", digest("3"))) =>
  (decide(cmd, s)[0] as Ev<"ContainerUpgradeRequested">).data.revision;

describe("decide Upgrade and Rollback", () => {
  it("given a running container, when upgraded, then UpgradeRequested with the merged spec and revision 1", () => {
    const s = fold(...running);
    const spec = mergeUpgrade({ containerId: ID, spec: SPEC1, oldImage: IMG1, newImage: IMG2, newImageName: "app:v2", changes: {} });
    when(s, upgradeCmd()).then([{ type: "ContainerUpgradeRequested", data: { revision: 1, image: "app:v2", imageDigest: D2, spec, healthGateSec: 5 } }]);
    // Its cmd was the old image's, so it takes the new image's (not written down: the image gives it).
    expect(spec).toEqual({ image: "app:v2", network: { mode: "none" } });
  });

  it.each([
    { state: "created", log: [created()] },
    { state: "exited", log: [...running, exited(0)] },
  ])("given a $state container, when upgraded, then accepted", ({ log }) => {
    expect(decide(upgradeCmd(), fold(...log))).toHaveLength(1);
  });

  it("given the same digest, then InvalidArgument 'image not changed'", () => {
    when(fold(...running), upgradeCmd("app:v1-again", D1)).thenThrows("InvalidArgument", /image not changed/);
  });

  it.each([
    { state: "paused", log: [...running, { type: "ContainerPauseRequested", data: {} }, { type: "ContainerPaused", data: {} }] as NewEvent[], why: /paused; unpause it first/ },
    { state: "restarting", log: [...running, exited(1), { type: "ContainerRestartScheduled", data: { attempt: 1, delayMs: 1000 } }] as NewEvent[], why: /restart is scheduled/ },
    { state: "removing", log: [...running, exited(0), { type: "ContainerRemoveRequested", data: { force: false } }] as NewEvent[], why: /busy: remove/ },
    { state: "dead", log: [...running, exited(0), { type: "ContainerRemoveRequested", data: { force: false } }, { type: "ContainerActionFailed", data: { action: "remove", error: "EBUSY" } }] as NewEvent[], why: /it is dead/ },
  ])("given a $state container, when upgraded or rolled back, then Conflict", ({ state, log, why }) => {
    const s = fold(...log);
    expect(s.state).toBe(state);
    when(s, upgradeCmd()).thenThrows("Conflict", why);
    when(s, { type: "Rollback" }).thenThrows("Conflict", state === "paused" || state === "restarting" || state === "dead" ? why : /busy/);
  });

  it("given a paused container with a settled upgrade, when rolled back, then Conflict (paused)", () => {
    const s = fold(...settled, { type: "ContainerPauseRequested", data: {} }, { type: "ContainerPaused", data: {} });
    when(s, { type: "Rollback" }).thenThrows("Conflict", /paused/);
  });

  it.each([
    { pending: "a stop", log: [...running, { type: "ContainerStopRequested", data: { signal: "SIGTERM", timeoutSec: 10 } }] as NewEvent[] },
    { pending: "a start", log: [created(), startReq] },
    { pending: "an upgrade", log: [...running, upgradeReq()] },
    { pending: "a rollback", log: [...settled, rollbackReq(0)] },
  ])("given $pending in progress, when upgraded or rolled back, then Conflict 'busy'", ({ log }) => {
    const s = fold(...log);
    when(s, upgradeCmd("app:v3", digest("3"))).thenThrows("Conflict", /busy/);
    when(s, { type: "Rollback" }).thenThrows("Conflict", /busy/);
  });

  it.each([
    { given: "never upgraded", log: running },
    { given: "just rolled back", log: [...settled, rollbackReq(0), exited(143), activated(0), started(NEW_AT + 30_000), finish(fold(...settled, rollbackReq(0), exited(143), activated(0), started(NEW_AT + 30_000)))] },
  ])("given a container $given, when rolled back, then Conflict 'no previous revision'", ({ log }) => {
    when(fold(...log), { type: "Rollback" }).thenThrows("Conflict", /no previous revision/);
  });

  it("given a settled upgrade, when rolled back, then RollbackRequested for the previous revision", () => {
    when(fold(...settled), { type: "Rollback" }).then([{ type: "ContainerRollbackRequested", data: { revision: 0 } }]);
  });

  it("given an image volume where the container has a bind mount, when upgraded, then InvalidArgument", () => {
    const s = fold(created({ ...SPEC1, mounts: [{ type: "bind", source: "/srv/x", target: "/x" }] }));
    when(s, upgradeCmd("app:v2", D2, { ...IMG2, volumes: ["/x"] })).thenThrows("InvalidArgument", /declares a volume at \/x/);
  });

  describe("the requested revision is the highest any upgrade took + 1 (numbers, so layer dirs, never reused)", () => {
    const backFromFailed = [...backOnOld, started(NEW_AT + 30_000, 44)];
    const twice = [
      ...settled,
      upgradeReq(2, 0, { ...SPEC2, image: "app:v3" }, digest("3")), exited(143), activated(2), started(NEW_AT + 90_000, 45),
    ];
    const rolledBackFromTwo = [...twice, finish(fold(...twice)), rollbackReq(1), exited(143), activated(1), started(NEW_AT + 120_000, 46)];
    it.each([
      { given: "a fresh container (on 0, none taken)", log: running, on: 0, revision: 1 },
      { given: "one settled upgrade (on 1, previous 0)", log: settled, on: 1, revision: 2 },
      { given: "a failed upgrade to 1, back on 0 (1 is not reused)", log: [...backFromFailed, finish(fold(...backFromFailed))], on: 0, revision: 2 },
      { given: "two settled upgrades (on 2, previous 1)", log: [...twice, finish(fold(...twice))], on: 2, revision: 3 },
      { given: "two upgrades and a rollback (on 1, none previous; 2 is not reused)", log: [...rolledBackFromTwo, finish(fold(...rolledBackFromTwo))], on: 1, revision: 3 },
      { given: "an upgrade in flight (its number is taken at the request)", log: [...running, upgradeReq(1)], on: 0, revision: null },
    ])("given $given, then $revision", ({ log, on, revision }) => {
      const s = fold(...log);
      expect(s.revision).toBe(on);
      if (revision === null) {
        expect(s.lastRevision).toBe(1);
        return;
      }
      expect(s.upgrade).toBeNull();
      expect(requestedRevision(s, upgradeCmd("app:v9", digest("9")))).toBe(revision);
    });
  });
});

// --- property: the saga against a simulated host, with crashes -----------------------------------
interface Host {
  running: boolean;
  /** The revision whose rootfs the next start runs (activateRevision; prepare writes it from the log's revision too). */
  activeRevision: number;
  /** The rw layers on the host, each with the saga (intent id) that made it ("create" for revision 0). */
  layers: Map<number, string>;
}
interface Img {
  name: string;
  digest: string;
  broken: boolean;
  config: ImageConfig;
}
const IMAGES: Img[] = [
  { name: "app:v0", digest: digest("0"), broken: false, config: IMG1 },
  { name: "app:v1", digest: digest("1"), broken: false, config: IMG2 },
  { name: "app:v2", digest: digest("2"), broken: false, config: { ...IMG1, cmd: ["serve", "--v3"] } },
  { name: "app:broken1", digest: digest("b"), broken: true, config: { ...IMG1, cmd: ["nope"] } },
  { name: "app:broken2", digest: digest("c"), broken: true, config: { ...IMG1, entrypoint: ["/missing"] } },
];
const imageOf = (d: string) => IMAGES.find((i) => i.digest === d)!;

class Sim {
  seq = 0;
  clock = T0;
  pid = 100;
  c: ContainerState | null = null;
  readonly host: Host = { running: false, activeRevision: 0, layers: new Map([[0, "create"]]) };
  private di = 0;
  /** The last saga pruned after its outcome (false: a crash came between, or the executor's catch path, which does not prune). */
  pruned = false;
  /** When the new revision last started in this saga (the sim's own clock), and whether it exited or turned unhealthy in its gate. */
  newRunAt: number | null = null;
  gateTrouble = false;

  constructor(private readonly dice: number[]) {}

  /** True with about `pct` percent; false once the dice run out (so fast-check shrinks to the happy path). */
  roll(pct: number): boolean {
    const d = this.dice[this.di++];
    return d !== undefined && d >= 100 - pct;
  }

  /** Append as the executor's `outcome` does, but an outcome the table refuses is a failure (the executor drops it: a stuck saga). */
  append(e: NewEvent): void {
    if (this.c && nextState(this.c.state, e.type) === null) throw new Error(`${e.type} is not allowed in state ${this.c.state}`);
    this.seq++;
    const env = { ...e, v: 1, eventId: `s${this.seq}`, at: iso(this.clock), node: "n1", actor: "berth/n1", correlationId: "c", causationId: null, seq: this.seq };
    this.c = evolve(this.c, env as ContainerEvent & { seq: number });
    this.clock += 10;
  }

  exit(code: number): NewEvent {
    return exited(code, this.clock);
  }

  prune(keep: readonly number[]): void {
    for (const r of [...this.host.layers.keys()]) if (!keep.includes(r)) this.host.layers.delete(r);
  }

  /**
   * stageRevision / activateRevision's layer: a new revision's is made (and, numbers never being
   * reused, nothing of an earlier revision may be in it); going back must find its layer.
   */
  useLayer(c: ContainerState, r: number): void {
    const u = c.upgrade!;
    const saga = c.pending!.eventId;
    const isNew = u.kind === "upgrade" && u.failed === null && r === u.to.revision;
    const owner = this.host.layers.get(r);
    if (isNew) {
      if (owner !== undefined) expect(owner, `revision ${r}'s layer was made by another saga`).toBe(saga);
      else this.host.layers.set(r, saga);
    } else {
      expect(owner, `going back to revision ${r}, its layer is gone`).toBeDefined();
    }
  }

  /** The owning node's loop: sagaLeg's steps, each from the folded log; a crash just goes round again (recovery). */
  runSaga(): void {
    this.pruned = false;
    this.newRunAt = null;
    this.gateTrouble = false;
    const crash = () => this.roll(15);
    for (let i = 0; i < 200; i++) {
      const c = this.c!;
      if (!c.upgrade) return;
      const step = upgradeNext(c, this.clock);
      if (!step) throw new Error("a saga without a next step");
      const u = c.upgrade;
      switch (step.kind) {
        case "stop":
          expect(step.stage.revision).toBe(u.failed === null ? u.to.revision : u.from.revision);
          this.useLayer(c, step.stage.revision);
          if (crash()) continue;
          this.host.running = false;
          if (crash()) continue;
          this.append(this.exit(143));
          break;
        case "activate": {
          const r = step.revision.revision;
          this.prune(keptDuring(c));
          if (crash()) continue;
          this.useLayer(c, r);
          this.host.activeRevision = r;
          if (crash()) continue;
          this.append({ type: "ContainerRevisionActivated", data: { revision: r } });
          break;
        }
        case "start": {
          // The host starts what the log says is active.
          expect(this.host.activeRevision).toBe(c.revision);
          expect(this.host.layers.has(c.revision)).toBe(true);
          // host.start is idempotent: a process an earlier start left running (its record lost in a
          // crash) is reported as started. Otherwise a broken image never starts, a good one rarely fails.
          const broken = imageOf(c.imageDigest).broken;
          if (!this.host.running && (broken || this.roll(5))) {
            const msg = broken ? "exec: no such file or directory" : "transient failure";
            if (u.kind === "upgrade" && u.failed === null) {
              this.append({ type: "ContainerUpgradeFailed", data: { reason: `start: ${msg}` } });
              break;
            }
            this.append(finish(c, `the revision it went back to did not start: ${msg}`));
            return;
          }
          this.host.running = true;
          if (crash()) continue;
          if (u.kind === "upgrade" && u.failed === null) this.newRunAt = this.clock;
          this.append({ type: "ContainerStarted", data: { pid: ++this.pid, startedAt: iso(this.clock) } });
          break;
        }
        case "gate":
          if (!this.host.running) {
            // Its exit happened but was not recorded before a crash: recovery records it now.
            this.append(this.exit(1));
          } else if (this.roll(20)) {
            this.gateTrouble = true;
            this.host.running = false;
            if (crash()) continue;
            this.append(this.exit(1));
          } else if (this.roll(20)) {
            this.gateTrouble = true;
            this.append(health("unhealthy"));
          } else {
            this.clock = Math.max(this.clock, step.untilMs);
          }
          break;
        case "fail":
          this.append({ type: "ContainerUpgradeFailed", data: { reason: step.reason } });
          break;
        case "finish":
          // A running container's upgrade settles only once the new revision ran through its gate.
          if (step.event.type === "ContainerUpgraded" && u.wasRunning) {
            expect(this.newRunAt).not.toBeNull();
            expect(this.clock - this.newRunAt!).toBeGreaterThanOrEqual(u.gateSec * 1000);
          }
          if (crash()) continue;
          this.append(step.event);
          // After the answer (a crash here leaves old layers for the next saga's activation).
          if (crash()) return;
          this.prune(keptAfter(c));
          this.pruned = true;
          return;
      }
    }
    throw new Error("the saga did not end in 200 steps");
  }
}

type Cmd = { kind: "upgrade"; image: number; gateSec: number } | { kind: "rollback" };
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("upgrade" as const), image: fc.integer({ min: 0, max: IMAGES.length - 1 }), gateSec: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: "rollback" as const }) },
);

describe("the saga against a simulated host, with crashes between host actions and their records", () => {
  it("ends every command settled: host and log agree, the kept layers are there, a failed upgrade changes nothing", () => {
    let accepted = 0;
    const outcomes = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.constantFrom("created", "running", "exited"),
        fc.array(cmdArb, { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat({ max: 99 }), { maxLength: 400, size: "max" }),
        (initial, cmds, dice) => {
          const sim = new Sim(dice);
          const v0 = IMAGES[0];
          sim.append(created({ image: v0.name, cmd: ["serve"], healthcheck: { test: ["CMD", "true"] } }, v0.digest));
          if (initial !== "created") {
            sim.append(startReq);
            sim.host.running = true;
            sim.append({ type: "ContainerStarted", data: { pid: 1, startedAt: iso(sim.clock) } });
          }
          if (initial === "exited") {
            sim.host.running = false;
            sim.append(sim.exit(0));
          }
          /** The image each revision was made with. */
          const revImage = new Map<number, Img>([[0, v0]]);

          for (const cmd of cmds) {
            const before = sim.c!;
            const command: ContainerCommand =
              cmd.kind === "rollback"
                ? { type: "Rollback" }
                : {
                    type: "Upgrade",
                    image: { name: IMAGES[cmd.image].name, digest: IMAGES[cmd.image].digest, config: IMAGES[cmd.image].config },
                    oldImage: imageOf(before.imageDigest).config,
                    changes: {},
                    healthGateSec: cmd.gateSec,
                  };
            let events: NewEvent[];
            try {
              events = decide(command, before);
            } catch (err) {
              if (err instanceof BerthError) continue; // refused (same image, no previous revision)
              throw err;
            }
            accepted++;
            expect(events).toHaveLength(1);
            const intent = events[0];
            if (intent.type === "ContainerUpgradeRequested") {
              // Revision numbers are never reused.
              expect(revImage.has(intent.data.revision)).toBe(false);
              expect(intent.data.revision).toBe(Math.max(...revImage.keys()) + 1);
              revImage.set(intent.data.revision, imageOf(intent.data.imageDigest));
            }
            sim.append(intent);
            sim.runSaga();

            const after = sim.c!;
            const host = sim.host;
            // Settled: nothing pending, no saga.
            expect(after.pending).toBeNull();
            expect(after.upgrade).toBeNull();
            // Host and log agree: the revision it runs (or will start), the layers it keeps.
            expect(host.activeRevision).toBe(after.revision);
            for (const r of kept(after)) expect(host.layers.has(r), `layer of kept revision ${r}`).toBe(true);
            if (sim.pruned) expect([...host.layers.keys()].sort()).toEqual([...new Set(kept(after))].sort());
            expect(host.running).toBe(after.state === "running");
            if (before.state !== "running") expect(after.state).toBe(before.state); // a stopped container stays stopped
            // The state's image is the one its revision was made with; a running one is never a broken one.
            expect(after.imageDigest).toBe(revImage.get(after.revision)!.digest);
            expect(after.image).toBe(revImage.get(after.revision)!.name);
            if (after.previous) expect(after.previous.imageDigest).toBe(revImage.get(after.previous.revision)!.digest);
            if (after.state === "running") expect(imageOf(after.imageDigest).broken).toBe(false);

            const upgraded = intent.type === "ContainerUpgradeRequested" && after.revision === intent.data.revision;
            const outcome = intent.type === "ContainerRollbackRequested" ? "rollback" : upgraded ? "upgraded" : "rolled back";
            outcomes.set(`${before.state}:${outcome}`, (outcomes.get(`${before.state}:${outcome}`) ?? 0) + 1);
            if (intent.type === "ContainerUpgradeRequested") {
              if (upgraded) {
                expect(after.previous).toEqual(revisionOf(before));
                expect(after.spec).toEqual(intent.data.spec);
              } else {
                // A failed upgrade leaves the revision, its image and spec, and the previous one as they were.
                expect(revisionOf(after)).toEqual(revisionOf(before));
                expect(after.previous).toEqual(before.previous);
                expect(after.lastError).toMatch(/^upgrade rolled back: /);
              }
              // A running container never settles on a broken image, nor on one that failed its gate.
              if (before.state === "running" && imageOf(intent.data.imageDigest).broken) expect(upgraded).toBe(false);
              if (sim.gateTrouble) expect(upgraded).toBe(false);
            } else {
              expect(revisionOf(after)).toEqual(before.previous);
              expect(after.previous).toBeNull();
            }
          }
        },
      ),
      { numRuns: 300 },
    );
    // The runs did reach the interesting outcomes.
    expect(accepted).toBeGreaterThan(300);
    for (const k of ["running:upgraded", "running:rolled back", "running:rollback", "exited:upgraded", "created:upgraded", "exited:rollback"]) {
      expect(outcomes.get(k) ?? 0, k).toBeGreaterThan(0);
    }
  });
});
