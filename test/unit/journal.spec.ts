// The offline journal: given records appended (and files damaged the ways a crash or a disk
// damages them), when replayed, cleared or reopened, then every complete record comes back once,
// in order, and what could not be read is dropped and reported.
import { appendFile, mkdtemp, open as fsOpen, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { crc32 } from "node:zlib";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Journal, MAX_RECORD_BYTES, decodeLine, encodeRecord, type JournalRecord } from "../../src/runtime/journal.js";

let base: string;
let file: string;
const opened: Journal[] = [];
let warnings: Array<Record<string, unknown>>;
const log = pino(
  { level: "warn" },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) warnings.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  }),
);

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "berth-journal-"));
  file = join(base, "offline", "journal.ndjson");
  warnings = [];
});

afterEach(async () => {
  vi.restoreAllMocks();
  for (const j of opened.splice(0)) await j.close().catch(() => undefined);
  await rm(base, { recursive: true, force: true });
});

const openJournal = async () => {
  const j = await Journal.open(file, { log });
  opened.push(j);
  return j;
};

const rec = (n: number, o: Partial<JournalRecord> = {}): JournalRecord => ({
  id: `evt-${String(n).padStart(5, "0")}`,
  subject: `berth.ev.container.${"a".repeat(64)}`,
  type: "ContainerExited",
  data: { exitCode: n % 256, oomKilled: false, exitedAt: new Date(Date.UTC(2025, 0, 1, 0, 0, n % 60)).toISOString() },
  at: new Date(Date.UTC(2025, 0, 1, 0, 0, n % 60)).toISOString(),
  ...o,
});
const ids = (rs: JournalRecord[]) => rs.map((r) => r.id);
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

describe("Journal", () => {
  it("given records appended one after another, when replayed, then all of them in order, nothing dropped", async () => {
    const j = await openJournal();
    for (const n of range(0, 5)) await j.append(rec(n));
    const got = await j.replay();
    expect(got.records).toEqual(range(0, 5).map((n) => rec(n)));
    expect(got.dropped).toEqual({ records: 0, bytes: 0, lines: [] });
    expect(got.duplicates).toBe(0);
  });

  it("given a new journal, when opened, then its dir is 0700 and its file 0600", async () => {
    const j = await openJournal();
    await j.append(rec(1));
    expect((await stat(join(base, "offline"))).mode & 0o777).toBe(0o700);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("given 1000 concurrent appends, when they resolve, then each was fsynced first, in far fewer rounds (group commit), in call order", async () => {
    const j = await openJournal();
    // FileHandle's prototype, from a handle of our own: count the journal's fsyncs.
    const probe = await fsOpen(join(base, "probe"), "w");
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    const order: string[] = [];
    const realSync = proto.sync;
    const sync = vi.spyOn(proto, "sync").mockImplementation(async function (this: unknown) {
      await realSync.call(this);
      order.push("fsync");
    });
    await Promise.all(range(0, 1000).map((n) => j.append(rec(n)).then(() => order.push("ack"))));
    expect(order.indexOf("fsync")).toBeLessThan(order.indexOf("ack"));
    expect(j.stats.records).toBe(1000);
    expect(j.stats.commits).toBeGreaterThanOrEqual(1);
    expect(j.stats.commits).toBeLessThan(10);
    expect(sync).toHaveBeenCalledTimes(j.stats.commits);
    sync.mockRestore();
    const got = await j.replay();
    expect(ids(got.records)).toEqual(range(0, 1000).map((n) => rec(n).id));
    expect(j.bytes).toBe((await stat(file)).size);
  });

  it("given appends that arrive while a round is being fsynced, when all resolve, then they were the next round", async () => {
    const j = await openJournal();
    const first = j.append(rec(0));
    const more = range(1, 50).map((n) => j.append(rec(n)));
    await Promise.all([first, ...more]);
    const late = range(50, 100).map((n) => j.append(rec(n)));
    await Promise.all(late);
    expect(j.stats.records).toBe(100);
    expect(j.stats.commits).toBeLessThanOrEqual(4);
    expect(ids((await j.replay()).records)).toEqual(range(0, 100).map((n) => rec(n).id));
  });

  it("given a last record cut short by a crash, when reopened, then the complete ones are kept, the tail dropped and reported, and appends go on cleanly", async () => {
    let j = await openJournal();
    for (const n of range(0, 3)) await j.append(rec(n));
    await j.close();
    const torn = encodeRecord(rec(3)).subarray(0, 40);
    await appendFile(file, torn);

    j = await openJournal();
    const got = await j.replay();
    expect(ids(got.records)).toEqual(["evt-00000", "evt-00001", "evt-00002"]);
    expect(got.dropped).toMatchObject({ records: 1, bytes: 40, lines: [{ line: 4, bytes: 40, reason: expect.stringMatching(/torn last line/) }] });
    expect(warnings).toContainEqual(expect.objectContaining({ level: 40, droppedBytes: 40, msg: expect.stringMatching(/torn last line of 40 bytes/) }));

    await j.append(rec(4));
    expect(ids((await j.replay()).records)).toEqual(["evt-00000", "evt-00001", "evt-00002", "evt-00004"]);
    // The file holds only whole lines: every one decodes.
    const lines = (await readFile(file)).toString().split("\n").filter(Boolean);
    expect(lines.map((l) => typeof decodeLine(Buffer.from(l)))).toEqual(["object", "object", "object", "object"]);
  });

  it("given a damaged line in the middle, when replayed, then only it is dropped (CRC), reported with its bytes, and the later ones kept", async () => {
    let j = await openJournal();
    for (const n of range(0, 5)) await j.append(rec(n));
    await j.close();
    const buf = await readFile(file);
    const lineLen = encodeRecord(rec(2)).length;
    const at = buf.indexOf(Buffer.from('"evt-00002"')) + 5;
    buf[at] = buf[at] === 0x31 ? 0x32 : 0x31; // one digit of its id, JSON still valid
    await writeFile(file, buf);

    j = await openJournal();
    const got = await j.replay();
    expect(ids(got.records)).toEqual(["evt-00000", "evt-00001", "evt-00003", "evt-00004"]);
    expect(got.dropped).toEqual({ records: 1, bytes: lineLen, lines: [{ line: 3, offset: 2 * lineLen, bytes: lineLen, reason: "CRC mismatch" }] });
    expect(warnings).toContainEqual(expect.objectContaining({ level: 40, line: 3, reason: "CRC mismatch" }));
    expect(warnings).toContainEqual(expect.objectContaining({ droppedRecords: 1, droppedBytes: lineLen, kept: 4 }));
  });

  it.each([
    ["garbage", Buffer.from("hello world\n")],
    ["zeros (a block the file system lost)", Buffer.concat([Buffer.alloc(512), Buffer.from("\n")])],
    ["a JSON line without its CRC", Buffer.from(`${JSON.stringify(rec(9))}\n`)],
    ["a valid CRC over a non-record", Buffer.from(`${crc32("{}").toString(16).padStart(8, "0")} {}\n`)],
    ["a line cut short, then more appended after it", encodeRecord(rec(9)).subarray(0, 30)],
  ])("given %s between records, when replayed, then that line is dropped with a reason", async (_name, bad) => {
    await (await openJournal()).append(rec(0));
    await appendFile(file, bad);
    await appendFile(file, encodeRecord(rec(1)));
    const got = await (await openJournal()).replay();
    expect(ids(got.records)).toEqual(["evt-00000", "evt-00001"]);
    expect(got.dropped.records).toBe(1);
    expect(got.dropped.bytes).toBe(bad.length);
    expect(got.dropped.lines[0].reason).toEqual(expect.any(String));
  });

  it("given the same id journaled twice, when replayed, then it comes back once (the first)", async () => {
    const j = await openJournal();
    await j.append(rec(1));
    await j.append(rec(1, { data: { exitCode: 99, oomKilled: false, exitedAt: rec(1).at } }));
    await j.append(rec(2));
    const got = await j.replay();
    expect(got.records).toEqual([rec(1), rec(2)]);
    expect(got.duplicates).toBe(1);
  });

  it("given a replay whose records were flushed, when cleared with its mark, then what came after the replay stays and appends go on", async () => {
    const j = await openJournal();
    for (const n of range(0, 3)) await j.append(rec(n));
    const { mark } = await j.replay();
    await j.append(rec(3));
    await j.append(rec(4));
    await j.clear(mark);
    expect(ids((await j.replay()).records)).toEqual(["evt-00003", "evt-00004"]);
    await j.append(rec(5));
    expect(ids((await j.replay()).records)).toEqual(["evt-00003", "evt-00004", "evt-00005"]);
    await j.clear();
    expect((await j.replay()).records).toEqual([]);
    expect((await stat(file)).size).toBe(0);
    await j.append(rec(6));
    expect(ids((await j.replay()).records)).toEqual(["evt-00006"]);
    // Nothing of the clear is left beside it.
    expect(await readdir(join(base, "offline"))).toEqual(["journal.ndjson"]);
  });

  it("given a mark from before a clear, when cleared with it, then Conflict and nothing changes", async () => {
    const j = await openJournal();
    await j.append(rec(0));
    const { mark } = await j.replay();
    await j.clear(mark);
    await j.append(rec(1));
    await expect(j.clear(mark)).rejects.toMatchObject({ code: "Conflict" });
    expect(ids((await j.replay()).records)).toEqual(["evt-00001"]);
  });

  it("given appends and a clear at once, when all settle, then no append is lost", async () => {
    const j = await openJournal();
    for (const n of range(0, 10)) await j.append(rec(n));
    const { mark } = await j.replay();
    await Promise.all([...range(10, 60).map((n) => j.append(rec(n))), j.clear(mark), ...range(60, 100).map((n) => j.append(rec(n)))]);
    expect(ids((await j.replay()).records)).toEqual(range(10, 100).map((n) => rec(n).id));
  });

  it("given a clear cut short before its rename (its temp file left), when reopened, then the journal is whole and the temp file gone", async () => {
    const j = await openJournal();
    for (const n of range(0, 3)) await j.append(rec(n));
    await j.close();
    await writeFile(join(base, "offline", ".journal.ndjson.clearing"), encodeRecord(rec(2)).subarray(0, 10));
    const again = await openJournal();
    expect(ids((await again.replay()).records)).toEqual(["evt-00000", "evt-00001", "evt-00002"]);
    expect(await readdir(join(base, "offline"))).toEqual(["journal.ndjson"]);
  });

  it("given a closed journal, when appended to, then Unavailable; when reopened, then its records are there and appends go on", async () => {
    const j = await openJournal();
    await j.append(rec(0));
    const inFlight = j.append(rec(1));
    await j.close();
    await expect(inFlight).resolves.toBeUndefined();
    await expect(j.append(rec(2))).rejects.toMatchObject({ code: "Unavailable" });
    await expect(j.replay()).rejects.toMatchObject({ code: "Unavailable" });

    const again = await openJournal();
    expect(ids((await again.replay()).records)).toEqual(["evt-00000", "evt-00001"]);
    await again.append(rec(2));
    expect(ids((await again.replay()).records)).toEqual(["evt-00000", "evt-00001", "evt-00002"]);
  });

  it.each([
    ["a bad id", { id: "../x" }],
    ["an empty id", { id: "" }],
    ["a bad type", { type: "no spaces" }],
    ["a bad time", { at: "yesterday" }],
    ["an impossible time", { at: "2025-13-45T10:00:00Z" }],
    ["data that is not an object", { data: [1, 2] as unknown as Record<string, unknown> }],
    ["an oversized record", { data: { blob: "x".repeat(MAX_RECORD_BYTES) } }],
  ])("given %s, when appended, then InvalidArgument and nothing written", async (_name, o) => {
    const j = await openJournal();
    await expect(j.append(rec(0, o as Partial<JournalRecord>))).rejects.toMatchObject({ code: "InvalidArgument" });
    expect((await j.replay()).records).toEqual([]);
    expect((await stat(file)).size).toBe(0);
  });

  it("given an unknown field on a record, when appended, then InvalidArgument", async () => {
    const j = await openJournal();
    await expect(j.append({ ...rec(0), extra: 1 } as JournalRecord)).rejects.toMatchObject({ code: "InvalidArgument" });
  });
});
