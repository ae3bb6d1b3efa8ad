// The event store against a real nats-server: optimistic concurrency, idempotent appends,
// ordered reads of one subject and of everything, live tail.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { EventStore } from "../../src/events/store.js";
import { containerSubject, type BerthEvent, type StoredEvent } from "../../src/events/types.js";
import { VersionConflict } from "../../src/shared/errors.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";

const skip = missing("nats-server").length > 0;

function event(type: string, data: unknown = {}, eventId = randomUUID()): BerthEvent {
  return { type, v: 1, eventId, at: new Date().toISOString(), node: "n1", actor: "t", correlationId: "c", causationId: null, data } as BerthEvent;
}

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
    const subj = containerSubject(randomUUID().replaceAll("-", ""));
    const s1 = await store.append(subj, event("ContainerStartRequested"), { expectedSeq: 0 });
    await expect(store.append(subj, event("ContainerStartRequested"), { expectedSeq: 0 })).rejects.toBeInstanceOf(VersionConflict);
    const s2 = await store.append(subj, event("ContainerStarted"), { expectedSeq: s1 });
    expect(s2).toBeGreaterThan(s1);
    await expect(store.append(subj, event("ContainerStarted"), { expectedSeq: s1 })).rejects.toMatchObject({ code: "Conflict" });
    const got = await store.readSubject(subj);
    expect(got.map((e) => e.type)).toEqual(["ContainerStartRequested", "ContainerStarted"]);
  });

  it("stores an event once when the same event id is appended twice", async () => {
    const subj = containerSubject(randomUUID().replaceAll("-", ""));
    const e = event("ContainerStartRequested");
    const a = await store.append(subj, e);
    const b = await store.append(subj, e);
    expect(b).toBe(a);
    expect(await store.readSubject(subj)).toHaveLength(1);
  });

  it("reads everything after a sequence, in order, and tails live events", async () => {
    const from = (await store.lastSeq()) + 1;
    const subj = containerSubject(randomUUID().replaceAll("-", ""));
    for (let i = 0; i < 5; i++) await store.append(subj, event("ContainerUpdated", { i }));
    const seen: StoredEvent[] = [];
    await store.read({ fromSeq: from }, (e) => void seen.push(e));
    expect(seen.map((e) => (e.data as { i: number }).i)).toEqual([0, 1, 2, 3, 4]);
    expect(seen.every((e, i) => i === 0 || e.seq > seen[i - 1].seq)).toBe(true);

    const live: StoredEvent[] = [];
    const tail = await store.tail(from + 5, (e) => live.push(e));
    await store.append(subj, event("ContainerUpdated", { i: 5 }));
    for (let t = 0; t < 100 && live.length === 0; t++) await new Promise((r) => setTimeout(r, 20));
    await tail.stop();
    expect(live.map((e) => (e.data as { i: number }).i)).toEqual([5]);
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
});
