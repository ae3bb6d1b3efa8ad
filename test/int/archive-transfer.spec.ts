// A checkpoint archive sent straight from one daemon's connection to another's (a direct
// migration), on a real nats-server: the bytes arrive whole and verified, a slow reader holds
// the sender back instead of being dropped, and every way it can go wrong (a refusal, no
// daemon, a sender that breaks off) ends the stream with a clear error instead of a short file.
import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { fetchArchive, serveArchive } from "../../src/runtime/archive-transfer.js";
import { BerthError, ErrorCode } from "../../src/shared/errors.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";

const skip = missing("nats-server").length > 0;

async function readAll(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

describe.skipIf(skip)("direct archive transfer over NATS", () => {
  let nats: TestNats;
  let source: NatsConnection;
  let target: NatsConnection;
  let sub: Subscription;
  let tcpSub: Subscription;
  let open: (checkpointId: string, replyTo: string) => Readable;
  const subject = `berth.fwd.t${randomBytes(3).toString("hex")}.archive.fetch`;
  // The same source, offering a TCP port on loopback for the bytes.
  const tcpSubject = `${subject}.tcp`;

  beforeAll(async () => {
    nats = await startNats();
    source = await nats.connect();
    target = await nats.connect();
    sub = source.subscribe(subject, { callback: (_e, m) => void serveArchive(source, m, (id, to) => open(id, to)) });
    tcpSub = source.subscribe(tcpSubject, { callback: (_e, m) => void serveArchive(source, m, (id, to) => open(id, to), { tcpHost: "127.0.0.1" }) });
    await source.flush();
  });
  afterAll(async () => {
    sub?.unsubscribe();
    tcpSub?.unsubscribe();
    await source?.close();
    await target?.close();
    await nats?.stop();
  });

  it("given a 20 MB archive, when fetched, then the target gets every byte and it verifies", async () => {
    const bytes = randomBytes(20 * 1024 * 1024 + 12345);
    let asked = "";
    open = (id) => {
      asked = id;
      // In pieces, as tar writes them.
      return Readable.from((function* () {
        for (let i = 0; i < bytes.length; i += 65536) yield bytes.subarray(i, i + 65536);
      })());
    };
    const { data, verified } = fetchArchive(target, subject, "cp1");
    const got = await readAll(data);
    await verified;
    expect(asked).toBe("cp1");
    expect(got.length).toBe(bytes.length);
    expect(createHash("sha256").update(got).digest("hex")).toBe(createHash("sha256").update(bytes).digest("hex"));
  });

  it("given a source with a TCP address, when fetched, then the bytes come over the port it offers, whole and verified", async () => {
    const bytes = randomBytes(30 * 1024 * 1024 + 7);
    open = () => Readable.from((function* () {
      for (let i = 0; i < bytes.length; i += 65536) yield bytes.subarray(i, i + 65536);
    })());
    // Watch the target's inbox: an offer, and no data frame on NATS.
    const seen: string[] = [];
    const spy = target.subscribe("_INBOX.>", { callback: (_e, m) => void seen.push(m.headers?.get("Berth-Tcp") ? "offer" : m.headers?.get("Berth-Seq") && m.data.length ? "frame" : "other") });
    try {
      const { data, verified } = fetchArchive(target, tcpSubject, "cpt");
      const got = await readAll(data);
      await verified;
      expect(got.equals(bytes)).toBe(true);
      expect(seen).toContain("offer");
      expect(seen).not.toContain("frame");
    } finally {
      spy.unsubscribe();
    }
  });

  it("given a target that asks for frames (tcp: false), when fetched from a TCP source, then frames carry it", async () => {
    const bytes = randomBytes(3 * 1024 * 1024);
    open = () => Readable.from([bytes]);
    const { data, verified } = fetchArchive(target, tcpSubject, "cpf", { tcp: false });
    expect((await readAll(data)).equals(bytes)).toBe(true);
    await verified;
  });

  it("given a target that cannot reach the port, when it says so, then the frames follow; a wrong token gets no byte", async () => {
    const bytes = randomBytes(2 * 1024 * 1024);
    open = () => Readable.from([bytes]);
    const inbox = `_INBOX.${randomBytes(4).toString("hex")}`;
    const s = target.subscribe(inbox);
    target.publish(tcpSubject, JSON.stringify({ checkpointId: "cpn" }), { reply: inbox });
    let got = 0;
    let ack = "";
    for await (const m of s) {
      ack = m.headers?.get("Berth-Ack") || ack;
      const offer = m.headers?.get("Berth-Tcp");
      if (offer) {
        // A connection with a wrong token is closed without a byte of the archive.
        const [host, port] = [offer.slice(0, offer.lastIndexOf(":")), Number(offer.slice(offer.lastIndexOf(":") + 1))];
        const sock = connect({ host, port });
        let leaked = 0;
        sock.on("data", (c: Buffer) => (leaked += c.length));
        sock.on("error", () => undefined);
        sock.write(randomBytes(32));
        await new Promise((r) => sock.once("close", r));
        expect(leaked).toBe(0);
        target.publish(m.headers!.get("Berth-Ack"), "no-tcp");
        continue;
      }
      if (m.headers?.get("Berth-Tick")) continue;
      if (m.headers?.get("Berth-End")) {
        expect(Number(m.headers.get("Berth-End"))).toBe(bytes.length);
        break;
      }
      got += m.data.length;
      target.publish(ack, String(m.headers!.get("Berth-Seq")));
    }
    s.unsubscribe();
    expect(got).toBe(bytes.length);
  });

  it("given a reader slower than the sender, when fetched, then nothing is dropped (the window holds the sender back)", async () => {
    const bytes = randomBytes(12 * 1024 * 1024);
    open = () => Readable.from([bytes]);
    const { data, verified } = fetchArchive(target, subject, "cp2");
    const parts: Buffer[] = [];
    for await (const c of data as AsyncIterable<Buffer>) {
      parts.push(c);
      await sleep(15);
    }
    await verified;
    expect(Buffer.concat(parts).equals(bytes)).toBe(true);
  });

  it("given a source that refuses, when fetched, then the stream fails with the source's code", async () => {
    open = () => {
      throw new BerthError(ErrorCode.NotFound, "node n1 sends no archive cp3");
    };
    const { data, verified } = fetchArchive(target, subject, "cp3");
    await expect(readAll(data)).rejects.toMatchObject({ code: ErrorCode.NotFound });
    await expect(verified).rejects.toThrow(/sends no archive cp3/);
  });

  it("given no daemon on the subject, when fetched, then Unavailable", async () => {
    const { data, verified } = fetchArchive(target, `${subject}.nobody`, "cp4");
    await expect(readAll(data)).rejects.toMatchObject({ code: ErrorCode.Unavailable });
    await expect(verified).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });

  it("given a source whose archive breaks off, when fetched, then the stream fails, never a short archive that verifies", async () => {
    open = () => {
      const r = new Readable({ read() {} });
      r.push(randomBytes(3 * 1024 * 1024));
      setTimeout(() => r.destroy(new Error("tar: read error")), 50);
      return r;
    };
    const { data, verified } = fetchArchive(target, subject, "cp5");
    await expect(readAll(data)).rejects.toThrow(/tar: read error/);
    await expect(verified).rejects.toThrow(/tar: read error/);
  });

  it("given a sender whose daemon dies mid-way, when fetched, then the stream fails within seconds (Timeout)", async () => {
    const dying = await nats.connect();
    const subj = `${subject}.dying`;
    dying.subscribe(subj, {
      callback: (_e, m) =>
        void serveArchive(dying, m, () => {
          const r = new Readable({ read() {} });
          r.push(randomBytes(2 * 1024 * 1024));
          return r;
        }),
    });
    await dying.flush();
    const { data, verified } = fetchArchive(target, subj, "cp6");
    const t0 = Date.now();
    let first = true;
    const read = (async () => {
      for await (const _c of data as AsyncIterable<Buffer>) {
        if (first) await dying.close();
        first = false;
      }
    })();
    await expect(read).rejects.toMatchObject({ code: ErrorCode.Timeout });
    await expect(verified).rejects.toThrow(/silent/);
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it("given a malformed request, when served, then an InvalidArgument frame answers it", async () => {
    const inbox = `_INBOX.${randomBytes(4).toString("hex")}`;
    const s = target.subscribe(inbox, { max: 1 });
    target.publish(subject, "not json", { reply: inbox });
    for await (const m of s) {
      expect(JSON.parse(m.headers!.get("Berth-Error"))).toMatchObject({ code: ErrorCode.InvalidArgument });
    }
  });
});
