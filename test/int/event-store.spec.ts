// The event store against a real nats-server: optimistic concurrency, idempotent appends,
// ordered reads of one subject and of everything, live tail.
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { EventStore } from "../../src/events/store.js";
import { containerSubject, type BerthEvent, type StoredEvent } from "../../src/events/types.js";
import { hashOf } from "../../src/events/chain.js";
import type { RejectedEvent } from "../../src/events/validate.js";
import { VersionConflict } from "../../src/shared/errors.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";

const skip = missing("nats-server").length > 0;

function event(type: string, data: unknown = {}, eventId = randomUUID()): BerthEvent {
  return { type, v: 1, eventId, at: new Date().toISOString(), node: "n1", actor: "t", correlationId: "c", causationId: null, data } as BerthEvent;
}

const newSubject = () => containerSubject(randomBytes(32).toString("hex"));
const started = (pid: number) => event("ContainerStarted", { pid, startedAt: new Date().toISOString() });

describe.skipIf(skip)("event store on JetStream", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let store: EventStore;

  beforeAll(async () => {
    nats = await startNats();
    nc = await nats.connect();
    store = await EventStore.open(nc);
  });
  afterAll(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it("appends to a new subject only with expected sequence 0, then only with the last one", async () => {
    const subj = newSubject();
    const s1 = await store.append(subj, event("ContainerStartRequested"), { expectedSeq: 0 });
    await expect(store.append(subj, event("ContainerStartRequested"), { expectedSeq: 0 })).rejects.toBeInstanceOf(VersionConflict);
    const s2 = await store.append(subj, started(1), { expectedSeq: s1 });
    expect(s2).toBeGreaterThan(s1);
    await expect(store.append(subj, started(2), { expectedSeq: s1 })).rejects.toMatchObject({ code: "Conflict" });
    const got = await store.readSubject(subj);
    expect(got.map((e) => e.type)).toEqual(["ContainerStartRequested", "ContainerStarted"]);
  });

  it("stores an event once when the same event id is appended twice", async () => {
    const subj = newSubject();
    const e = event("ContainerStartRequested");
    const a = await store.append(subj, e);
    const b = await store.append(subj, e);
    expect(b).toBe(a);
    expect(await store.readSubject(subj)).toHaveLength(1);
  });

  it("reads everything after a sequence, in order, and tails live events", async () => {
    const from = (await store.lastSeq()) + 1;
    const subj = newSubject();
    for (let i = 0; i < 5; i++) await store.append(subj, event("ContainerStartRequested", { attempt: i }));
    const seen: StoredEvent[] = [];
    await store.read({ fromSeq: from }, (e) => void seen.push(e));
    expect(seen.map((e) => (e.data as { attempt: number }).attempt)).toEqual([0, 1, 2, 3, 4]);
    expect(seen.every((e, i) => i === 0 || e.seq > seen[i - 1].seq)).toBe(true);

    const live: StoredEvent[] = [];
    const tail = await store.tail(from + 5, (e) => live.push(e));
    await store.append(subj, event("ContainerStartRequested", { attempt: 5 }));
    for (let t = 0; t < 100 && live.length === 0; t++) await new Promise((r) => setTimeout(r, 20));
    await tail.stop();
    expect(live.map((e) => (e.data as { attempt: number }).attempt)).toEqual([5]);
  });

  it("stops a read early and up to a given sequence", async () => {
    const last = await store.lastSeq();
    const seen: number[] = [];
    await store.read({ fromSeq: 1, toSeq: 3 }, (e) => void seen.push(e.seq));
    expect(seen).toEqual([1, 2, 3]);
    const firstTwo: number[] = [];
    await store.read({ fromSeq: 1 }, (e) => (firstTwo.push(e.seq), firstTwo.length < 2));
    expect(firstTwo).toEqual([1, 2]);
    expect(last).toBeGreaterThan(3);
  });

  /** The subject's stored messages as they are, with their prevHash. */
  async function raw(subj: string) {
    const out: { seq: number; data: Uint8Array; prevHash: string | null | undefined }[] = [];
    await store.readRaw({ subject: subj }, (m) => void out.push({ seq: m.seq, data: m.data.slice(), prevHash: JSON.parse(new TextDecoder().decode(m.data)).prevHash }));
    return out;
  }

  it("chains each subject: prevHash is null first, then the sha256 of the previous stored message", async () => {
    const subj = newSubject();
    let seq = await store.append(subj, event("ContainerStartRequested"), { expectedSeq: 0 });
    seq = await store.append(subj, started(7), { expectedSeq: seq });
    // A second store (another daemon, or this one restarted) knows nothing of the first's appends.
    const other = await EventStore.open(nc);
    seq = await other.append(subj, event("ContainerPauseRequested"), { expectedSeq: seq });
    // Without an expected sequence: against the subject's last message.
    await store.append(subj, event("ContainerPaused"));
    const msgs = await raw(subj);
    expect(msgs).toHaveLength(4);
    expect(msgs[0].prevHash).toBeNull();
    for (let i = 1; i < msgs.length; i++) expect(msgs[i].prevHash, `message ${i}`).toBe(hashOf(msgs[i - 1].data));
  });

  it("keeps the chain when appends without an expected sequence race on one subject", async () => {
    const subj = newSubject();
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.append(subj, event("ContainerStartRequested", { attempt: i }))));
    const msgs = await raw(subj);
    expect(msgs).toHaveLength(8);
    expect(msgs[0].prevHash).toBeNull();
    for (let i = 1; i < msgs.length; i++) expect(msgs[i].prevHash).toBe(hashOf(msgs[i - 1].data));
  });

  it("chains after a duplicate append to the message that was stored, not to the repeat", async () => {
    const subj = newSubject();
    const e = event("ContainerStartRequested");
    const a = await store.append(subj, e, { expectedSeq: 0 });
    await new Promise((r) => setTimeout(r, 5)); // the repeat gets another `at`: other bytes
    expect(await store.append(subj, { ...e, at: new Date().toISOString() }, { expectedSeq: 0 })).toBe(a);
    await store.append(subj, started(3), { expectedSeq: a });
    const msgs = await raw(subj);
    expect(msgs[1].prevHash).toBe(hashOf(msgs[0].data));
  });

  it("hands messages that fail validation to onRejected, in read and in tail, and never to onEvent", async () => {
    const subj = newSubject();
    const from = (await store.lastSeq()) + 1;
    const js = store.js;
    await js.publish(subj, new TextEncoder().encode(JSON.stringify({ type: "ContainerExited", data: { exitCode: "abc" } })));
    await store.append(subj, event("ContainerStartRequested"));
    await js.publish(subj, new TextEncoder().encode("not json"));
    const seen: string[] = [];
    const rejected: RejectedEvent[] = [];
    await store.read({ fromSeq: from }, (e) => void seen.push(e.type), (r) => void rejected.push(r));
    expect(seen).toEqual(["ContainerStartRequested"]);
    expect(rejected.map((r) => [r.seq - from, r.type, r.reason])).toEqual([
      [0, "ContainerExited", "unknown version undefined of ContainerExited (this daemon reads v1)"],
      [2, null, "not JSON"],
    ]);
    const live: string[] = [];
    const liveRejected: number[] = [];
    const tail = await store.tail(from, (e) => live.push(e.type), (r) => liveRejected.push(r.seq));
    for (let t = 0; t < 100 && live.length + liveRejected.length < 3; t++) await new Promise((r) => setTimeout(r, 20));
    await tail.stop();
    expect(live).toEqual(["ContainerStartRequested"]);
    expect(liveRejected).toEqual([from, from + 2]);
  });
});
