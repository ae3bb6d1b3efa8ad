// A checkpoint archive sent straight from one daemon's connection to another's (a direct
// migration), on a real nats-server with real tar on both ends: the files arrive whole and their
// digest checks, over the offered TCP port (tar holding the socket) or as NATS frames; a slow
// reader holds the sender back instead of being dropped, and every way it can go wrong (a
// refusal, no daemon, a sender that breaks off or dies, a digest that differs) fails the fetch
// with a clear error instead of leaving a short archive.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { fetchArchive, serveArchive } from "../../src/runtime/archive-transfer.js";
import { dirSink, dirSource } from "../../src/runtime/dir-archive.js";
import { treeDigest } from "../../src/runtime/tree-digest.js";
import { BerthError, ErrorCode } from "../../src/shared/errors.js";
import type { ArchiveSink, ArchiveSource } from "../../src/shared/host-facts.js";
import { startNats, type TestNats } from "../support/nats.js";
import { missing } from "../support/prereq.js";

const skip = missing("nats-server", "tar", "openssl").length > 0;

describe.skipIf(skip)("direct archive transfer over NATS", () => {
  let nats: TestNats;
  let source: NatsConnection;
  let target: NatsConnection;
  let sub: Subscription;
  let tcpSub: Subscription;
  let open: (checkpointId: string, replyTo: string) => ArchiveSource;
  let tmp: string;
  let n = 0;
  const subject = `berth.fwd.t${randomBytes(3).toString("hex")}.archive.fetch`;
  // The same source, offering a TCP port on loopback for the bytes.
  const tcpSubject = `${subject}.tcp`;

  /** A source dir like a checkpoint's: a big file of `mb` MB, a small one, a subdir with a symlink. */
  async function makeDir(mb: number): Promise<{ dir: string; parts: string[] }> {
    const dir = join(tmp, `src${++n}`);
    await mkdir(join(dir, "checkpoint"), { recursive: true });
    await writeFile(join(dir, "checkpoint", "pages-1.img"), randomBytes(mb * 1024 * 1024 + 12345));
    await symlink("../parent", join(dir, "checkpoint", "parent"));
    await writeFile(join(dir, "meta.json"), JSON.stringify({ n }));
    await writeFile(join(dir, "not-sent"), "x");
    return { dir, parts: ["checkpoint", "meta.json"] };
  }
  const sinkDir = () => join(tmp, `dst${++n}`);

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), "berth-at-"));
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
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it("given a 20 MB archive, when fetched as frames, then the target's dir holds the sent parts, byte for byte", async () => {
    const { dir, parts } = await makeDir(20);
    let asked = "";
    open = (id) => {
      asked = id;
      return dirSource(dir, parts);
    };
    const to = sinkDir();
    await fetchArchive(target, subject, "cp1", dirSink(to));
    expect(asked).toBe("cp1");
    expect((await readFile(join(to, "checkpoint", "pages-1.img"))).equals(await readFile(join(dir, "checkpoint", "pages-1.img")))).toBe(true);
    expect(await treeDigest(to)).toBe(await treeDigest(dir, parts));
    await expect(readFile(join(to, "not-sent"))).rejects.toThrow(/ENOENT/);
  });

  it("given a source with a TCP address, when fetched, then tar sends it over the port it offers, tar takes it, and no frame carries data", async () => {
    const { dir, parts } = await makeDir(30);
    open = () => dirSource(dir, parts);
    // Watch the target's inbox: an offer, and no data frame on NATS.
    const seen: string[] = [];
    const spy = target.subscribe("_INBOX.>", { callback: (_e, m) => void seen.push(m.headers?.get("Berth-Tcp") ? "offer" : m.headers?.get("Berth-Seq") && m.data.length ? "frame" : "other") });
    try {
      const to = sinkDir();
      const sink = dirSink(to);
      const used: string[] = [];
      await fetchArchive(target, tcpSubject, "cpt", { ...sink, fromSocket: (s, sig) => (used.push("socket"), sink.fromSocket(s, sig)) });
      expect(used).toEqual(["socket"]);
      expect(await treeDigest(to)).toBe(await treeDigest(dir, parts));
      expect(seen).toContain("offer");
      expect(seen).not.toContain("frame");
    } finally {
      spy.unsubscribe();
    }
  });

  it("given a target that asks for frames (tcp: false), when fetched from a TCP source, then frames carry it", async () => {
    const { dir, parts } = await makeDir(3);
    open = () => dirSource(dir, parts);
    const to = sinkDir();
    await fetchArchive(target, tcpSubject, "cpf", dirSink(to), { tcp: false });
    expect(await treeDigest(to)).toBe(await treeDigest(dir, parts));
  });

  it("given a target that cannot reach the port, when it says so, then the frames follow; a wrong token gets no byte", async () => {
    const { dir, parts } = await makeDir(2);
    open = () => dirSource(dir, parts);
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
        expect(m.headers.get("Berth-Digest")).toBe(await treeDigest(dir, parts));
        break;
      }
      got += m.data.length;
      target.publish(ack, String(m.headers!.get("Berth-Seq")));
    }
    s.unsubscribe();
    expect(got).toBeGreaterThan(2 * 1024 * 1024);
  });

  it("given a reader slower than the sender, when fetched, then nothing is dropped (the window holds the sender back)", async () => {
    const { dir, parts } = await makeDir(12);
    open = () => dirSource(dir, parts);
    const to = sinkDir();
    const sink = dirSink(to);
    const slow: ArchiveSink = {
      ...sink,
      fromStream: async (data, signal) => {
        const parts: Buffer[] = [];
        for await (const c of data as AsyncIterable<Buffer>) {
          parts.push(c);
          await sleep(15);
        }
        await sink.fromStream(Readable.from([Buffer.concat(parts)]), signal);
      },
    };
    await fetchArchive(target, subject, "cp2", slow);
    expect(await treeDigest(to)).toBe(await treeDigest(dir, parts));
  });

  it("given a source that refuses, when fetched, then the fetch fails with the source's code", async () => {
    open = () => {
      throw new BerthError(ErrorCode.NotFound, "node n1 sends no archive cp3");
    };
    await expect(fetchArchive(target, subject, "cp3", dirSink(sinkDir()))).rejects.toMatchObject({ code: ErrorCode.NotFound, message: expect.stringMatching(/sends no archive cp3/) });
  });

  it("given no daemon on the subject, when fetched, then Unavailable", async () => {
    await expect(fetchArchive(target, `${subject}.nobody`, "cp4", dirSink(sinkDir()))).rejects.toMatchObject({ code: ErrorCode.Unavailable });
  });

  it("given a source whose archive breaks off, when fetched, then the fetch fails, never a short archive that passes", async () => {
    const { dir, parts } = await makeDir(3);
    open = () => ({
      ...dirSource(dir, parts),
      stream: () => {
        const r = new PassThrough();
        dirSource(dir, parts).stream().pipe(r, { end: false });
        setTimeout(() => r.destroy(new Error("tar: read error")), 50);
        return r;
      },
    });
    await expect(fetchArchive(target, subject, "cp5", dirSink(sinkDir()))).rejects.toThrow(/tar: read error/);
  });

  it("given a TCP source whose tar fails (a part is missing), when fetched, then the fetch fails with tar's words", async () => {
    const { dir } = await makeDir(1);
    open = () => dirSource(dir, ["checkpoint", "no-such-part"]);
    await expect(fetchArchive(target, tcpSubject, "cp7", dirSink(sinkDir()))).rejects.toThrow(/could not be sent|no-such-part/);
  });

  it("given a digest that differs from what was unpacked, when fetched, then the fetch fails as damaged", async () => {
    for (const subj of [subject, tcpSubject]) {
      const { dir, parts } = await makeDir(1);
      open = () => ({ ...dirSource(dir, parts), digest: async () => "AAAA" });
      await expect(fetchArchive(target, subj, "cp8", dirSink(sinkDir()))).rejects.toThrow(/damaged/);
    }
  });

  it("given a sender whose daemon dies mid-way, when fetched, then the fetch fails within seconds (Timeout)", async () => {
    const dying = await nats.connect();
    const subj = `${subject}.dying`;
    const { dir, parts } = await makeDir(1);
    dying.subscribe(subj, {
      callback: (_e, m) =>
        void serveArchive(dying, m, () => ({
          ...dirSource(dir, parts),
          // Some bytes, then nothing more: its connection goes.
          stream: () => {
            const r = new Readable({ read() {} });
            r.push(randomBytes(2 * 1024 * 1024));
            setTimeout(() => void dying.close(), 100);
            return r;
          },
        })),
    });
    await dying.flush();
    const t0 = Date.now();
    await expect(fetchArchive(target, subj, "cp6", dirSink(sinkDir()))).rejects.toMatchObject({ code: ErrorCode.Timeout, message: expect.stringMatching(/silent/) });
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
