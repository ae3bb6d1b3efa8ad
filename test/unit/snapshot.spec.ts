// Snapshot + catch-up equals a full replay, for random histories and random cut points. The
// histories come from the real decider (commands), plausible outcomes of the pending intent and
// facts the host reports, all checked against the transition table; raw histories (any event
// anywhere, anomalies and unknown containers included) are mixed in, and both kinds carry
// poison: messages that fail validation (validate.ts), which every replay quarantines alike.
import { isDeepStrictEqual } from "node:util";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decide, type ContainerCommand, type NewEvent } from "../../src/aggregates/container/decider.js";
import { encodeEvent } from "../../src/events/codec.js";
import { OUTCOMES, imageSubject, type BerthEvent, type EventType, type StoredEvent } from "../../src/events/types.js";
import { admit, isRejected, type RejectedEvent } from "../../src/events/validate.js";
import { ReadModel } from "../../src/projections/read-model.js";
import { nextState } from "../../src/aggregates/container/transitions.js";
import {
  SNAPSHOT_SCHEMA,
  SnapshotRejected,
  decodeSnapshot,
  encodeSnapshot,
  misfit,
  takeSnapshot,
  type SnapshotDoc,
} from "../../src/projections/snapshot.js";

const IDS = ["a1", "b2", "c3", "d4", "e5"].map((p) => p + "0".repeat(62));
const T0 = Date.UTC(2026, 0, 1);

interface Step {
  c: number;
  kind: number;
  pick: number;
  flag: boolean;
  gap: number;
}

const step = fc.record({
  c: fc.nat({ max: IDS.length - 1 }),
  kind: fc.nat({ max: 10 }), // 10: poison
  pick: fc.nat({ max: 1_000 }),
  flag: fc.boolean(),
  gap: fc.nat({ max: 4 }),
});

const imageDigest = (s: Step) => "sha256:" + String(s.pick % 7).padStart(64, "0");

/** Messages no berth daemon writes: each must be quarantined, never folded. */
function poisonFor(s: Step, id: string, at: string): { subject: string; bytes: Uint8Array } {
  const subject = `berth.ev.container.${id}`;
  const env = { v: 1, eventId: `p-${s.pick}`, at, node: "n1", actor: "forger", correlationId: "c", causationId: null };
  const json = (o: unknown, subj = subject) => ({ subject: subj, bytes: new TextEncoder().encode(JSON.stringify(o)) });
  switch (s.pick % 9) {
    case 0:
      return json({ ...env, type: "ContainerExited", data: { exitCode: "abc" } });
    case 1:
      return json({ ...env, type: "ContainerTeleported", data: {} });
    case 2:
      return json({ ...env, v: 2, type: "ContainerRemoved", data: {} });
    case 3:
      return json({ ...env, type: "ContainerRemoved", data: {} }, "berth.ev.container.web");
    case 4:
      return json({ ...env, type: "ContainerRemoved", data: {} }, "berth.ev.pod.p1");
    case 5:
      return json({ ...env, type: "ImageRemoved", data: { name: "img0:latest", digest: "sha256:" + "0".repeat(64) } }, `berth.ev.node.n1`);
    case 6:
      return { subject, bytes: new TextEncoder().encode("{not json") };
    case 7:
      return json({ ...env, at: "yesterday", type: "ContainerPaused", data: {} });
    default:
      return json({ ...env, type: "ContainerStarted", data: { pid: 1, startedAt: at, extra: true } });
  }
}

/** Payloads that look like what the executor, the decider and the image service write. */
function dataFor(type: EventType, s: Step, at: string, name: string, id: string): unknown {
  switch (type) {
    case "ContainerCreated": {
      const policy = (["no", "always", "on-failure", "unless-stopped"] as const)[s.pick % 4];
      return {
        id,
        name,
        image: "busybox:latest",
        imageDigest: "sha256:" + "b".repeat(64),
        node: s.flag ? "n1" : "n2",
        spec: {
          image: "busybox:latest",
          cmd: ["sleep", String(s.pick)],
          env: [`I=${s.pick}`],
          labels: { app: name, tier: s.flag ? "web" : "db" },
          restartPolicy: policy === "on-failure" ? { name: policy, maxRetries: 3, backoff: { initialMs: 50, resetAfterMs: 2_000 } } : { name: policy },
          ...(s.pick % 3 === 0 ? { healthcheck: { test: ["true"], intervalMs: 1_000, retries: 3 } } : {}),
          ...(policy === "no" && s.pick % 5 === 0 ? { autoRemove: true } : {}),
          network: { mode: "none" },
        },
      };
    }
    case "ContainerStarted":
      return { pid: 1000 + s.pick, startedAt: at };
    case "ContainerStartFailed":
      return { error: `runc create failed ${s.pick}` };
    case "ContainerExited":
      return { exitCode: s.pick % 4 === 0 ? 137 : s.pick % 3, oomKilled: s.pick % 7 === 0, exitedAt: at };
    case "ContainerSignaled":
      return { signal: s.flag ? "SIGKILL" : "SIGHUP" };
    case "ContainerActionFailed":
      return { action: "stop", error: `boom ${s.pick}` };
    case "ContainerRestartScheduled":
      return { attempt: 1 + (s.pick % 5), delayMs: 100 * 2 ** (s.pick % 5) };
    case "ContainerHealthChanged":
      return { status: (["starting", "healthy", "unhealthy"] as const)[s.pick % 3], failingStreak: s.pick % 4 };
    case "ContainerRestoreFailed":
      return { reason: "image busybox:latest is gone" };
    case "ContainerExecStarted":
      return { execId: `x${s.pick}`, cmd: ["sh", "-c", "true"], user: s.flag ? "1000:1000" : "" };
    case "ContainerExecExited":
      return { execId: `x${s.pick}`, exitCode: s.pick % 3 };
    case "ContainerUpdated":
      return { resources: { pidsLimit: s.pick } };
    case "ContainerStopRequested":
      return { signal: "SIGTERM", timeoutSec: 10 };
    case "ContainerKillRequested":
      return { signal: "SIGKILL" };
    case "ContainerRestartRequested":
      return { timeoutSec: 10 };
    case "ContainerRemoveRequested":
      return { force: s.flag };
    case "ContainerNetworkDetached":
      return { ip: `10.89.3.${2 + (s.pick % 200)}` };
    case "ContainerUpgradeRequested":
      return { revision: 1 + (s.pick % 3), image: `img${s.pick % 3}:latest`, imageDigest: imageDigest(s), spec: { image: `img${s.pick % 3}:latest`, cmd: ["sleep", "1"] }, healthGateSec: s.pick % 5 };
    case "ContainerRollbackRequested":
    case "ContainerRevisionActivated":
      return { revision: s.pick % 3 };
    case "ContainerUpgradeFailed":
      return { reason: `exited ${s.pick}` };
    case "ContainerCheckpointRequested":
      return { checkpointId: "c".repeat(64), leaveRunning: s.flag, tcpEstablished: false, fileLocks: false };
    case "ContainerCheckpointed":
      return { checkpointId: "c".repeat(64), leaveRunning: s.flag };
    case "ContainerRestoreRequested":
      return { checkpointId: "c".repeat(64) };
    case "ContainerRestored":
      return { checkpointId: "c".repeat(64), pid: 100 + s.pick, startedAt: at };
    case "ContainerUpgraded":
      return { fromImage: "img0:latest", fromDigest: imageDigest(s), toImage: "img1:latest", toDigest: imageDigest(s), revision: 1 + (s.pick % 3) };
    case "ContainerUpgradeRolledBack":
      return { reason: s.flag ? "requested" : "exited", revision: s.pick % 3, image: "img0:latest", imageDigest: imageDigest(s), fromRevision: 1 + (s.pick % 3) };
    case "ImageImported":
      return {
        name: `img${s.pick % 3}:latest`,
        digest: imageDigest(s),
        sizeBytes: s.pick,
        config: { entrypoint: null, cmd: ["sh"], env: [], workdir: "/", user: "", stopSignal: null, labels: {} },
      };
    case "ImageRemoved":
      return { name: `img${s.pick % 3}:latest`, digest: imageDigest(s) };
    case "NodeStarted":
      return { httpUrl: `http://127.0.0.1:${7000 + s.pick}`, version: "0.1.0", dataRoot: "/var/lib/berth" };
    case "NodeRestored":
      return { containers: s.pick, durationMs: 12, failed: 0, orphans: [] };
    default:
      return {};
  }
}

const CONTAINER_TYPES = Object.keys({
  ContainerCreated: 1, ContainerStartRequested: 1, ContainerStarted: 1, ContainerStartFailed: 1, ContainerStopRequested: 1,
  ContainerKillRequested: 1, ContainerSignaled: 1, ContainerRestartRequested: 1, ContainerExited: 1, ContainerPauseRequested: 1,
  ContainerPaused: 1, ContainerUnpauseRequested: 1, ContainerUnpaused: 1, ContainerUpdated: 1, ContainerRemoveRequested: 1,
  ContainerRemoved: 1, ContainerNetworkDetached: 1, ContainerRestartScheduled: 1, ContainerRestartCancelled: 1, ContainerHealthChanged: 1,
  ContainerRestoreFailed: 1, ContainerActionFailed: 1, ContainerExecStarted: 1, ContainerExecExited: 1,
  ContainerUpgradeRequested: 1, ContainerRollbackRequested: 1, ContainerRevisionActivated: 1, ContainerUpgradeFailed: 1,
  ContainerUpgraded: 1, ContainerUpgradeRolledBack: 1,
  ContainerCheckpointRequested: 1, ContainerCheckpointed: 1, ContainerRestoreRequested: 1, ContainerRestored: 1,
  ContainerMigrationRequested: 1, ContainerMigrationDumped: 1, ContainerMigrationRestoreFailed: 1, ContainerMigrated: 1,
} satisfies Record<Extract<EventType, `Container${string}`>, 1>) as Extract<EventType, `Container${string}`>[];
const OTHER_TYPES: EventType[] = ["ImageImported", "ImageRemoved", "NodeStarted", "NodeRestored"];
/** Facts the host may report at any time (the executor checks the table before appending them). */
const FACTS: EventType[] = ["ContainerExited", "ContainerRestartScheduled", "ContainerHealthChanged", "ContainerRestoreFailed", "ContainerStarted", "ContainerSignaled", "ContainerExecStarted", "ContainerExecExited"];

type Read = StoredEvent | RejectedEvent;

class History {
  readonly events: Read[] = [];
  readonly model = new ReadModel();
  /** Poison messages pushed. */
  poisoned = 0;
  private seq = 0;
  private generation = 0;

  push(type: EventType, data: unknown, s: Step, subject: string, node = "n1"): void {
    const env = {
      type,
      v: 1,
      eventId: `ev-${this.seq + 1}`,
      at: new Date(T0 + (this.seq + 1) * 1_000).toISOString(),
      node,
      actor: "test",
      correlationId: "c",
      causationId: null,
      data,
    } as BerthEvent;
    this.pushBytes(subject, encodeEvent(env), s);
  }

  /** Read back from the stream means: through the one check every read goes through. */
  private pushBytes(subject: string, bytes: Uint8Array, s: Step): Read {
    this.seq += 1 + (s.gap === 4 ? 3 : 0); // gaps: other streams' messages, deleted ones
    const back = admit(subject, this.seq, bytes);
    this.events.push(back);
    this.model.apply(back);
    return back;
  }

  poison(s: Step): void {
    const p = poisonFor(s, IDS[s.c], this.at());
    const back = this.pushBytes(p.subject, p.bytes, s);
    expect(isRejected(back), `poison ${s.pick % 9} was admitted`).toBe(true);
    this.poisoned++;
  }

  at(): string {
    return new Date(T0 + (this.seq + 1) * 1_000).toISOString();
  }

  /** One step of a valid history: a command through decide, an outcome, or a host fact. */
  valid(s: Step): void {
    const id = IDS[s.c];
    const subject = `berth.ev.container.${id}`;
    if (s.kind === 10) return this.poison(s);
    if (s.kind === 9) {
      const type = OTHER_TYPES[s.pick % OTHER_TYPES.length];
      const node = `n${1 + (s.pick % 2)}`;
      const subj = type.startsWith("Image") ? imageSubject(imageDigest(s)) : `berth.ev.node.${node}`;
      this.push(type, dataFor(type, s, this.at(), "", ""), s, subj, node);
      return;
    }
    const st = this.model.byId(id) ?? null;
    if (!st) {
      const name = `ctr${s.c}-${this.generation++}`;
      const cmd: ContainerCommand = { type: "Create", data: dataFor("ContainerCreated", s, this.at(), name, id) as never };
      this.emit(cmd, st, s, subject);
      return;
    }
    if (s.kind <= 4) {
      const cmds: ContainerCommand[] = [
        { type: "Start" },
        { type: "Stop", signal: "SIGTERM", timeoutSec: 10 },
        { type: "Kill", signal: "SIGKILL" },
        { type: "Restart", timeoutSec: 5 },
        { type: "Pause" },
        { type: "Unpause" },
        { type: "Update", restartPolicy: { name: s.flag ? "always" : "no" } },
        { type: "Update", resources: { pidsLimit: s.pick }, healthcheck: s.flag ? null : { test: ["true"] } },
        { type: "Remove", force: s.flag },
      ];
      this.emit(cmds[s.pick % cmds.length], st, s, subject);
      return;
    }
    const candidates = s.kind <= 7 && st.pending ? (OUTCOMES[st.pending.type] ?? []) : FACTS;
    const allowed = candidates.filter((t) => nextState(st.state, t as never) !== null);
    if (allowed.length === 0) return;
    const type = allowed[s.pick % allowed.length];
    // Outcomes and host facts come from the container's own node (the owner rule).
    this.push(type, dataFor(type, s, this.at(), st.name, id), s, subject, st.node);
  }

  private emit(cmd: ContainerCommand, st: Parameters<typeof decide>[1], s: Step, subject: string): void {
    let out: NewEvent[];
    try {
      out = decide(cmd, st);
    } catch {
      return; // refused: nothing is appended
    }
    for (const e of out) this.push(e.type, e.data, s, subject);
  }

  /** One step of a raw history: any event on any container, names from a tiny pool. */
  raw(s: Step): void {
    if (s.kind >= 9) return this.valid(s);
    const id = IDS[s.c];
    const type = CONTAINER_TYPES[s.pick % CONTAINER_TYPES.length];
    const name = s.flag ? "web" : `n${s.gap}`;
    this.push(type, dataFor(type, s, this.at(), name, id), s, `berth.ev.container.${id}`);
  }
}

function replay(events: Read[]): ReadModel {
  const m = new ReadModel();
  for (const e of events) m.apply(e);
  return m;
}

async function roundTrip(doc: SnapshotDoc): Promise<SnapshotDoc> {
  return decodeSnapshot((await encodeSnapshot(doc)).gz);
}

const history = fc.record({
  raw: fc.nat({ max: 3 }).map((n) => n === 0), // one history in four is raw
  steps: fc.array(step, { minLength: 0, maxLength: 250, size: "max" }),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 4 }),
});

describe("snapshot + catch-up equals a full replay", () => {
  it("for random histories and cut points", async () => {
    await fc.assert(
      fc.asyncProperty(history, async ({ raw, steps, cuts }) => {
        const h = new History();
        for (const s of steps) (raw ? h.raw(s) : h.valid(s));
        const events = h.events;
        const full = replay(events);
        if (!raw) {
          expect(h.model.anomalies).toBe(0); // valid histories keep the table
          expect(h.model.quarantinedTotal).toBe(h.poisoned);
          // Poison changes nothing but the versions (each container's last sequence).
          const clean = replay(events.filter((e) => !isRejected(e)));
          const strip = (m: ReadModel) => [...m.containers.values()].map((c) => ({ ...c, version: 0 }));
          expect(strip(h.model)).toEqual(strip(clean));
          expect(h.model.images).toEqual(clean.images);
          expect(h.model.nodes).toEqual(clean.nodes);
        }
        expect(h.model.quarantined.map((q) => q.seq)).toEqual(full.quarantined.map((q) => q.seq));
        // Exact at every cut: the snapshot's data alone (name index rebuilt) is the model.
        const prefix = new ReadModel();
        for (let k = 0; k <= events.length; k++) {
          if (k > 0) prefix.apply(events[k - 1]);
          const back = new ReadModel();
          back.load(JSON.parse(JSON.stringify(prefix.capture())));
          // isDeepStrictEqual is the fast check (this runs for every k); expect explains a failure.
          if (!isDeepStrictEqual(back, prefix)) expect(back).toEqual(prefix);
        }
        // At random cuts, the whole way: snapshot, gzip, decode, restore, catch up.
        for (const f of cuts) {
          const k = Math.floor(f * events.length);
          // The live model goes on applying events while the snapshot is being encoded.
          const live = replay(events.slice(0, k));
          const doc = takeSnapshot(live, "n1", { name: "BERTH_EVENTS", created: "2026-01-01T00:00:00Z" });
          for (const e of events.slice(k)) live.apply(e);
          const restored = new ReadModel();
          restored.load((await roundTrip(doc)).model);
          expect(restored.seq).toBe(k === 0 ? 0 : events[k - 1].seq);
          for (const e of events.slice(k)) restored.apply(e);
          expect(restored).toEqual(full);
          expect(restored.capture()).toEqual(full.capture()); // same order, too
          for (const n of ["web", "n0", "n1", "n2", ...[...full.containers.values()].map((c) => c.name)]) {
            expect(restored.idOfName(n)).toBe(full.idOfName(n));
          }
          expect(live).toEqual(full);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("keeps 1,000 containers with specs well under one KV value (1 MiB) once gzipped", async () => {
    const h = new History();
    for (let i = 0; i < 1000; i++) {
      const s: Step = { c: 0, kind: 0, pick: i, flag: i % 2 === 0, gap: 0 };
      const id = i.toString(16).padStart(64, "0");
      h.push("ContainerCreated", dataFor("ContainerCreated", s, h.at(), `ctr-${i}`, id), s, `berth.ev.container.${id}`);
      h.push("ContainerStartRequested", {}, s, `berth.ev.container.${id}`);
      h.push("ContainerStarted", { pid: 100 + i, startedAt: h.at() }, s, `berth.ev.container.${id}`);
    }
    const { gz, jsonBytes } = await encodeSnapshot(takeSnapshot(h.model, "n1", null));
    expect(jsonBytes).toBeGreaterThan(500_000);
    expect(gz.length).toBeLessThan(256 * 1024);
    const back = new ReadModel();
    back.load((await decodeSnapshot(gz)).model);
    expect(back).toEqual(h.model);
  });
});

describe("a snapshot that cannot be trusted is rejected", () => {
  const good = (): SnapshotDoc => {
    const h = new History();
    const s: Step = { c: 0, kind: 0, pick: 1, flag: true, gap: 0 };
    h.valid(s);
    h.valid({ ...s, kind: 1, pick: 0 });
    return takeSnapshot(h.model, "n1", { name: "BERTH_EVENTS", created: "2026-01-01T00:00:00Z" });
  };
  const gz = (o: unknown) => gzipSync(Buffer.from(JSON.stringify(o)));

  it("accepts the good one", async () => {
    expect((await roundTrip(good())).seq).toBe(2);
  });

  it.each([
    ["of another schema version", () => gz({ ...good(), schema: SNAPSHOT_SCHEMA + 1 }), /schema/],
    ["without a schema", () => gz({ ...good(), schema: undefined }), /schema/],
    ["folded by another build's evolve", () => gz({ ...good(), fold: "0123456789abcdef" }), /other code/],
    ["not gzipped", () => Buffer.from(JSON.stringify(good())), /not gzipped JSON/],
    ["truncated", () => gz(good()).subarray(0, 40), /not gzipped JSON/],
    ["gzipped garbage", () => gzipSync(Buffer.from("{\"schema\":1,")), /not gzipped JSON/],
    ["with a model of another seq", () => gz({ ...good(), model: { ...good().model, seq: 99 } }), /model.seq/],
    ["with a malformed container", () => gz({ ...good(), model: { ...good().model, containers: [{ id: 1 }] } }), /container/],
    ["with a container beyond its seq", () => {
      const d = good();
      return gz({ ...d, model: { ...d.model, containers: d.model.containers.map((c) => ({ ...c, version: 999 })) } });
    }, /beyond seq/],
    ["without images", () => gz({ ...good(), model: { ...good().model, images: null } }), /images/],
    ["without the quarantine", () => gz({ ...good(), model: { ...good().model, quarantined: null } }), /quarantine/],
    ["with a quarantined event beyond its seq", () => gz({ ...good(), model: { ...good().model, quarantinedTotal: 1, quarantined: [{ seq: 99, subject: "x", type: null, reason: "r", kind: "invalid" }] } }), /quarantined event/],
  ])("%s", async (_what, bytes, why) => {
    const p = decodeSnapshot(bytes());
    await expect(p).rejects.toBeInstanceOf(SnapshotRejected);
    await expect(p).rejects.toThrow(why);
  });

  it("does not fit a log it is ahead of, or another stream", () => {
    const d = good();
    const now = { name: "BERTH_EVENTS", created: "2026-01-01T00:00:00Z", lastSeq: 2 };
    expect(misfit(d, now)).toBeNull();
    expect(misfit(d, { ...now, lastSeq: 1 })).toMatch(/ends at 1/);
    expect(misfit(d, { ...now, created: "2026-02-01T00:00:00Z" })).toMatch(/created/);
    expect(misfit({ ...d, stream: null }, now)).toBeNull();
  });
});
