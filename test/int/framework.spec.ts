// The aggregate framework on a real nats-server, driven by an aggregate that only the tests know
// (test/support/tally.ts): the generic command service appends to its subjects with optimistic
// concurrency, the projection registry folds it beside the containers, snapshots carry it.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { EventStore } from "../../src/events/store.js";
import { CommandService, aggregateSubject } from "../../src/handlers/command-service.js";
import { Projector } from "../../src/projections/projector.js";
import { ReadModel } from "../../src/projections/read-model.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";
import { tallyDecider, type TallyState } from "../support/tally.js";

const skip = missing("nats-server").length > 0;
const ctx = () => ({ node: "n1", actor: "test", correlationId: randomUUID(), causationId: null });

describe.skipIf(skip)("aggregate framework", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  const projectors: Projector[] = [];

  /** A daemon's worth of the framework: its own projector (with the tally registered) and command service. */
  async function node() {
    const projector = new Projector(store);
    projector.model.register(tallyDecider);
    await projector.start();
    projectors.push(projector);
    return { projector, tallies: new CommandService(store, projector).for(tallyDecider) };
  }

  beforeAll(async () => {
    nats = await startNats();
    nc = await nats.connect();
    store = await EventStore.open(nc);
  });
  afterAll(async () => {
    for (const p of projectors) await p.stop();
    await nc?.close();
    await nats?.stop();
  });

  it("given an open tally, when numbers are added, then the fold has their sum and the subject's version", async () => {
    const { projector, tallies } = await node();
    const id = randomUUID();
    await tallies.handle(id, { type: "Open", start: 1 }, ctx());
    await tallies.handle(id, { type: "Add", n: 2 }, ctx());
    const [added] = await tallies.handle(id, { type: "Add", n: 3 }, ctx());
    const s = projector.model.state<TallyState>("tally", id)!;
    expect(s).toMatchObject({ id, total: 6, version: added.seq });
    expect(added.subject).toBe(aggregateSubject("tally", id));
    expect((await store.readSubject(added.subject)).map((e) => e.type)).toEqual(["TallyOpened", "TallyAdded", "TallyAdded"]);
  });

  it("when decide refuses, then nothing is appended", async () => {
    const { tallies } = await node();
    const id = randomUUID();
    await expect(tallies.handle(id, { type: "Add", n: 1 }, ctx())).rejects.toMatchObject({ code: "NotFound" });
    await tallies.handle(id, { type: "Open", start: 0 }, ctx());
    await expect(tallies.handle(id, { type: "Open", start: 0 }, ctx())).rejects.toMatchObject({ code: "AlreadyExists" });
    await expect(tallies.handle(id, { type: "Add", n: -1 }, ctx())).rejects.toMatchObject({ code: "InvalidArgument" });
    expect(await store.readSubject(aggregateSubject("tally", id))).toHaveLength(1);
  });

  it("given two daemons adding to one tally at once, then every add lands once (conflicts are retried on fresh state)", async () => {
    const a = await node();
    const b = await node();
    const id = randomUUID();
    await a.tallies.handle(id, { type: "Open", start: 0 }, ctx());
    await b.projector.waitForSeq(await store.lastSeq());
    await Promise.all(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? a : b).tallies.handle(id, { type: "Add", n: i + 1 }, ctx())),
    );
    await a.projector.waitForSeq(await store.lastSeq());
    await b.projector.waitForSeq(await store.lastSeq());
    expect(a.projector.model.state<TallyState>("tally", id)!.total).toBe(21);
    expect(b.projector.model.state<TallyState>("tally", id)!.total).toBe(21);
    expect(await store.readSubject(aggregateSubject("tally", id))).toHaveLength(7);
  });

  it("a closed tally leaves the model; a snapshot carries open ones, and snapshot + catch-up equals a full replay", async () => {
    const { projector, tallies } = await node();
    const keep = randomUUID();
    const close = randomUUID();
    await tallies.handle(keep, { type: "Open", start: 5 }, ctx());
    await tallies.handle(close, { type: "Open", start: 1 }, ctx());
    const snap = projector.model.capture();
    expect(snap.aggregates?.tally.map((t) => t.id)).toEqual(expect.arrayContaining([keep, close]));
    await tallies.handle(close, { type: "Close" }, ctx());
    await tallies.handle(keep, { type: "Add", n: 1 }, ctx());
    expect(projector.model.state("tally", close)).toBeUndefined();

    const fromSnap = new ReadModel();
    fromSnap.register(tallyDecider);
    fromSnap.load(JSON.parse(JSON.stringify(snap)));
    await store.read({ fromSeq: snap.seq + 1 }, (e) => fromSnap.apply(e));
    const full = new ReadModel();
    full.register(tallyDecider);
    await store.read({}, (e) => full.apply(e));
    expect(fromSnap.capture()).toEqual(full.capture());
    expect(full.state<TallyState>("tally", keep)!.total).toBe(6);
  });
});
