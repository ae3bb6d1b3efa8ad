// Snapshots against a real nats-server: the KV bucket round trip (chunked too), restore from a
// snapshot + catch-up equals a full replay, a missing, corrupt, foreign or too-new snapshot falls
// back to a full replay, and the background writer's triggers.
import { randomUUID } from "node:crypto";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { pino } from "pino";
import { EventStore } from "../../src/events/store.js";
import { containerSubject, imageSubject, nodeSubject, type BerthEvent } from "../../src/events/types.js";
import { envelope } from "../../src/handlers/command-service.js";
import { Projector } from "../../src/projections/projector.js";
import {
  SNAPSHOT_SCHEMA,
  SnapshotStore,
  streamRef,
  takeSnapshot,
  type SnapshotDoc,
  type SnapshotSaved,
} from "../../src/projections/snapshot.js";
import { SnapshotWriter } from "../../src/projections/snapshot-writer.js";
import { startNats, type TestNats } from "../support/nats.js";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { until } from "../support/proc.js";
import { connectAs } from "../support/roles.js";

const skip = missing("nats-server").length > 0;

const ctx = { node: "n1", actor: "test", correlationId: "c", causationId: null };
const ev = (type: BerthEvent["type"], data: unknown): BerthEvent => envelope({ type, data } as never, ctx, randomUUID());

/** Append a few containers' lives: created, started, some exited, some removed. */
async function writeLives(store: EventStore, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID().replaceAll("-", "") + randomUUID().replaceAll("-", "");
    ids.push(id);
    const s = containerSubject(id);
    const spec = { image: "busybox:latest", cmd: ["sleep", String(i)], env: [`TAG=${tag}`], labels: { tag }, restartPolicy: { name: "always" as const } };
    await store.append(s, ev("ContainerCreated", { id, name: `${tag}-${i}`, image: "busybox:latest", imageDigest: "sha256:" + "a".repeat(64), node: "n1", spec }));
    await store.append(s, ev("ContainerStartRequested", {}));
    await store.append(s, ev("ContainerStarted", { pid: 100 + i, startedAt: new Date().toISOString() }));
    if (i % 3 === 0) await store.append(s, ev("ContainerExited", { exitCode: i % 2, oomKilled: false, exitedAt: new Date().toISOString() }));
    if (i % 5 === 4) {
      await store.append(s, ev("ContainerRemoveRequested", { force: true }));
      await store.append(s, ev("ContainerRemoved", {}));
    }
  }
  return ids;
}

describe.skipIf(skip)("snapshots on NATS", () => {
  let nats: TestNats;
  let nc: NatsConnection;
  let store: EventStore;
  let snapshots: SnapshotStore;
  const projectors: Projector[] = [];
  const fresh = () => {
    const p = new Projector(store);
    projectors.push(p);
    return p;
  };

  beforeAll(async () => {
    nats = await startNats();
    nc = await nats.connect();
    store = await EventStore.open(nc);
    snapshots = await SnapshotStore.open(nc);
    await store.append(nodeSubject("n1"), ev("NodeStarted", { httpUrl: "http://127.0.0.1:1", version: "0.1.0", dataRoot: "/tmp/x" }));
    await store.append(imageSubject("sha256:" + "a".repeat(64)), ev("ImageImported", { name: "busybox:latest", digest: "sha256:" + "a".repeat(64), sizeBytes: 1, config: { entrypoint: null, cmd: ["sh"], env: [], workdir: "/", user: "", stopSignal: null, labels: {} } }));
    await writeLives(store, 40, "before");
  });
  afterAll(async () => {
    for (const p of projectors) await p.stop();
    await nc?.close();
    await nats?.stop();
  });

  it("a projector restored from a snapshot + catch-up equals one from a full replay, and tails on", async () => {
    const first = fresh();
    await first.start();
    const doc = takeSnapshot(first.model, "n1", await streamRef(store));
    const saved = await snapshots.save(doc);
    expect(saved).toMatchObject({ seq: doc.seq, parts: 1 });
    const after = await writeLives(store, 10, "after");

    const loaded = await snapshots.load("n1");
    expect(loaded?.seq).toBe(doc.seq);
    const restored = fresh();
    const r = await restored.start({ snapshot: loaded });
    const full = fresh();
    const f = await full.start();
    expect(r).toMatchObject({ fromSnapshot: true, snapshotSeq: doc.seq });
    expect(f).toMatchObject({ fromSnapshot: false, snapshotSeq: null });
    expect(r.events).toBe((await store.lastSeq()) - doc.seq);
    expect(restored.model).toEqual(full.model);
    expect(restored.model.idOfName("after-1")).toBe(after[1]);

    // Live events reach both the same way.
    const seq = await store.append(containerSubject(after[1]), ev("ContainerExited", { exitCode: 3, oomKilled: false, exitedAt: new Date().toISOString() }));
    await restored.waitForSeq(seq);
    await full.waitForSeq(seq);
    expect(restored.model).toEqual(full.model);
    expect(restored.model.byId(after[1])).toMatchObject({ state: "exited", exitCode: 3 });
  });

  it("round-trips a document through the bucket, in several parts, alternating slots", async () => {
    const small = await SnapshotStore.open(nc, { partBytes: 1024 });
    const p = fresh();
    await p.start();
    const doc = takeSnapshot(p.model, "chunky", await streamRef(store));
    const s1 = await small.save(doc);
    expect(s1.parts).toBeGreaterThan(1);
    expect(await small.load("chunky")).toEqual(doc);
    expect((await small.kv.get("chunky"))?.json()).toMatchObject({ slot: "a", parts: s1.parts, schema: SNAPSHOT_SCHEMA });

    await writeLives(store, 2, "more");
    await p.waitForSeq(await store.lastSeq());
    const doc2 = takeSnapshot(p.model, "chunky", await streamRef(store));
    await small.save(doc2);
    expect((await small.kv.get("chunky"))?.json()).toMatchObject({ slot: "b", seq: doc2.seq });
    expect(await small.load("chunky")).toEqual(doc2);
    // Other nodes' snapshots are other keys.
    expect(await small.load("other")).toBeNull();
  });

  it("keeps the previous snapshot whole when a write dies between its parts and its manifest", async () => {
    const p = fresh();
    await p.start();
    const doc = takeSnapshot(p.model, "crashy", await streamRef(store));
    await snapshots.save(doc);
    // What BERTH_FAULT=snapshot-write leaves: the other slot's parts rewritten, the manifest not.
    const m = (await snapshots.kv.get("crashy"))!.json<{ slot: string }>();
    const other = m.slot === "a" ? "b" : "a";
    await snapshots.kv.put(`crashy.${other}.0`, gzipSync(Buffer.from("half a snapshot")));
    expect(await snapshots.load("crashy")).toEqual(doc);
    await snapshots.save(doc);
    expect((await snapshots.kv.get("crashy"))!.json<{ slot: string }>().slot).toBe(other);
    expect(await snapshots.load("crashy")).toEqual(doc);
  });

  describe("falls back to a full replay", () => {
    let good: SnapshotDoc;
    beforeAll(async () => {
      const p = fresh();
      await p.start();
      good = takeSnapshot(p.model, "bad", await streamRef(store));
    });
    const fullReplay = async () => {
      const p = fresh();
      await p.start();
      return p.model;
    };
    const restoreWith = async (snapshot: SnapshotDoc | null) => {
      const p = fresh();
      const r = await p.start({ snapshot });
      return { r, model: p.model };
    };

    it("when there is no snapshot", async () => {
      const doc = await snapshots.load("never-written");
      expect(doc).toBeNull();
      const { r, model } = await restoreWith(doc);
      expect(r.fromSnapshot).toBe(false);
      expect(model).toEqual(await fullReplay());
    });

    it.each([
      ["the manifest is not JSON", async () => void (await snapshots.kv.put("bad", "{nope"))],
      ["the manifest is of another schema", async () => {
        await snapshots.save(good);
        const m = (await snapshots.kv.get("bad"))!.json<Record<string, unknown>>();
        await snapshots.kv.put("bad", JSON.stringify({ ...m, schema: SNAPSHOT_SCHEMA + 1 }));
      }],
      ["a part is corrupt", async () => {
        await snapshots.save(good);
        const m = (await snapshots.kv.get("bad"))!.json<{ slot: string }>();
        await snapshots.kv.put(`bad.${m.slot}.0`, gzipSync(Buffer.from("{}")));
      }],
      ["a part is gone", async () => {
        await snapshots.save(good);
        const m = (await snapshots.kv.get("bad"))!.json<{ slot: string }>();
        await snapshots.kv.purge(`bad.${m.slot}.0`);
      }],
      ["the document is of another schema", async () => {
        await snapshots.save({ ...good, schema: SNAPSHOT_SCHEMA + 1 });
        const m = (await snapshots.kv.get("bad"))!.json<Record<string, unknown>>();
        await snapshots.kv.put("bad", JSON.stringify({ ...m, schema: SNAPSHOT_SCHEMA })); // only the manifest says 1
      }],
    ])("when %s", async (_what, corrupt) => {
      await corrupt();
      expect(await snapshots.load("bad")).toBeNull();
      const { r, model } = await restoreWith(null);
      expect(r.fromSnapshot).toBe(false);
      expect(model).toEqual(await fullReplay());
      await snapshots.save(good);
      expect(await snapshots.load("bad")).toEqual(good);
    });

    it("when the snapshot is ahead of the log or folds another stream", async () => {
      for (const bad of [
        { ...good, seq: good.seq + 1000, model: { ...good.model, seq: good.seq + 1000 } },
        { ...good, stream: { name: good.stream!.name, created: "2001-01-01T00:00:00Z" } },
      ]) {
        const { r, model } = await restoreWith(bad);
        expect(r).toMatchObject({ fromSnapshot: false, snapshotSeq: null });
        expect(model).toEqual(await fullReplay());
      }
    });
  });

  describe("the background writer", () => {
    it("writes after N events, never two at once, and a final one on stop", async () => {
      let concurrent = 0;
      let maxConcurrent = 0;
      const spy = Object.create(snapshots) as SnapshotStore;
      spy.save = async (doc: SnapshotDoc): Promise<SnapshotSaved> => {
        maxConcurrent = Math.max(maxConcurrent, ++concurrent);
        try {
          await new Promise((r) => setTimeout(r, 30)); // a slow bucket: events keep coming meanwhile
          return await snapshots.save(doc);
        } finally {
          concurrent--;
        }
      };
      const p = fresh();
      const r = await p.start();
      const w = new SnapshotWriter({ snapshots: spy, node: "writer", projector: p, events: store, everyEvents: 10, everyMs: 60_000 });
      w.start(); // the replay alone is far more than 10 events: written at once
      await until(async () => w.written >= 1);
      expect(r.events).toBeGreaterThan(10);
      const before = w.written;
      await writeLives(store, 10, "writer"); // ≈ 36 events, each awaited: many triggers
      await p.waitForSeq(await store.lastSeq());
      await until(async () => w.written > before && w.lastSeq >= p.model.seq - 10);
      expect(maxConcurrent).toBe(1);
      expect(w.failures).toBe(0);

      await store.append(containerSubject(randomUUID().replaceAll("-", "")), ev("ContainerUpdated", {})); // below N
      await p.waitForSeq(await store.lastSeq());
      await w.stop({ final: true });
      expect(w.lastSeq).toBe(p.model.seq);
      const loaded = await snapshots.load("writer");
      expect(loaded?.seq).toBe(p.model.seq);
      const back = fresh();
      await back.start({ snapshot: loaded });
      expect(back.model).toEqual(p.model);
    });

    it("writes every T when something changed, and survives failed writes", async () => {
      let fail = true;
      let calls = 0;
      const flaky = Object.create(snapshots) as SnapshotStore;
      flaky.save = async (doc: SnapshotDoc) => {
        calls++;
        if (fail) throw new Error("bucket is down");
        return snapshots.save(doc);
      };
      const p = fresh();
      await p.start();
      const w = new SnapshotWriter({
        snapshots: flaky, node: "timed", projector: p, events: store,
        fromSeq: p.model.seq, everyEvents: 1_000_000, everyMs: 100, retryMs: 50, log: pino({ level: "silent" }),
      });
      w.start();
      await new Promise((r) => setTimeout(r, 350));
      expect(calls).toBe(0); // nothing changed: nothing written
      await store.append(containerSubject(randomUUID().replaceAll("-", "")), ev("ContainerUpdated", {}));
      await until(async () => w.failures >= 2);
      expect(w.written).toBe(0);
      fail = false;
      await until(async () => w.written === 1);
      expect(w.lastSeq).toBe(p.model.seq);
      await w.stop({ final: true });
      expect(w.written).toBe(1); // nothing new since: no final write
    });
  });
});

describe.skipIf(missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0)("a daemon with snapshots", () => {
  let d: TestDaemon | undefined;
  afterAll(async () => {
    await d?.destroy();
  });

  it("writes a final snapshot on a graceful stop and comes back with the same state", async () => {
    d = await startTestDaemon();
    for (const name of ["snap-a", "snap-b", "snap-c"]) {
      const r = await d.cmd("container.create", { name, image: "busybox:latest", cmd: ["true"] });
      expect(r.error).toBeUndefined();
    }
    const before = await d.get<{ containers: { id: string }[] }>("/v1/containers");
    const asDaemon = await connectAs(d.dataRoot, "daemon");
    const last = (await (await jetstreamManager(asDaemon)).streams.info("BERTH_EVENTS")).state.last_seq;
    await asDaemon.close();
    const { dataRoot, node } = d;
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    await d.stop();
    d = await startTestDaemon({ dataRoot, node, natsPort });
    const again = await connectAs(dataRoot, "daemon");
    try {
      const kv = await new Kvm(again).open("berth_snapshots");
      expect((await kv.get(node))?.json<{ seq: number }>().seq).toBeGreaterThanOrEqual(last);
    } finally {
      await again.close();
    }
    expect(await d.get("/v1/containers")).toEqual(before);
  });
});
