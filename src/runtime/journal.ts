// The offline journal (issue 11): while the log cannot be reached, every fact the node records
// (exits, restarts by policy, health changes, starts from local copies) goes here, durably, with
// its real time and a stable event id; when the log is back, the daemon appends the journal's
// records once and clears it. A second flush after a crash adds nothing because the ids are
// stable and the store dedupes on them, so the journal only has to keep every record until a
// flush went through.
//
// Format: one record per line, `<crc32 of the JSON, 8 hex> <JSON>\n` (UTF-8). A line is taken
// only if it is complete (newline), its CRC matches and it is a valid record: a torn last line
// (a crash mid-write) is repaired on open, and a damaged line in the middle is skipped alone (the
// CRC and the newline bound the damage to it; the lines after it were acknowledged and stay; a
// whole record glued to the end of a cut line is found again).
// Both are reported with the bytes and records dropped.
//
// Durability: append() resolves once its line is written and fsynced. Appends that arrive while a
// write+fsync is under way wait for the next one, all together (group commit), so a burst costs
// one fsync, not one each. Every write is positional at the committed end; a failed one is cut
// back, so the next batch never follows a torn line.
import { constants } from "node:fs";
import { mkdir, open, rename, unlink, type FileHandle } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { crc32 } from "node:zlib";
import { Type, type Static } from "@sinclair/typebox";
import { TypeCompiler } from "@sinclair/typebox/compiler";
import { conflict, invalid, unavailable } from "../shared/errors.js";
import { logger, type Logger } from "../log.js";

/** A line longer than this is refused on append and dropped on replay. */
export const MAX_RECORD_BYTES = 1024 * 1024;

const RFC3339 = "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$";

export const JournalRecord = Type.Object(
  {
    /** The event's stable id (its Nats-Msg-Id when flushed): a UUID or a hash the caller derives. */
    id: Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$" }),
    /** The aggregate it is about (its subject or id). */
    subject: Type.String({ pattern: "^[A-Za-z0-9][A-Za-z0-9._:>*-]{0,255}$" }),
    type: Type.String({ pattern: "^[A-Za-z][A-Za-z0-9]{0,63}$" }),
    data: Type.Record(Type.String(), Type.Unknown()),
    /** When it happened (real time, RFC 3339). */
    at: Type.String({ pattern: RFC3339 }),
  },
  { additionalProperties: false },
);
export type JournalRecord = Static<typeof JournalRecord>;

const check = TypeCompiler.Compile(JournalRecord);

/** Where a replay ended: clear(mark) drops what it returned and keeps what was appended since. */
export interface JournalMark {
  readonly generation: number;
  readonly offset: number;
}

export interface DroppedLine {
  /** 1-based line number, and byte offset, in the file as it was read. */
  line: number;
  offset: number;
  bytes: number;
  reason: string;
}

export interface ReplayResult {
  /** The complete records, in the order they were appended (a repeated id: its first record only). */
  records: JournalRecord[];
  mark: JournalMark;
  /** Lines not taken (damaged in the middle, or the torn tail repaired on open). */
  dropped: { records: number; bytes: number; lines: DroppedLine[] };
  /** Records whose id an earlier record had (skipped: the same fact journaled twice). */
  duplicates: number;
}

const NL = 0x0a;

/** One record as its line. InvalidArgument for a record that replay would not take back. */
export function encodeRecord(r: JournalRecord): Buffer {
  if (!check.Check(r)) {
    const e = check.Errors(r).First();
    throw invalid(`journal record: ${e ? `${e.path || "record"} ${e.message}` : "invalid"}`);
  }
  if (Number.isNaN(Date.parse(r.at))) throw invalid(`journal record: at '${r.at}' is not a valid time`);
  const json = JSON.stringify(r);
  const line = Buffer.from(`${crcOf(json)} ${json}\n`);
  if (line.length > MAX_RECORD_BYTES) throw invalid(`journal record ${r.id} is larger than ${MAX_RECORD_BYTES} bytes`);
  return line;
}

/** One line (without its newline) back as a record, or why not. */
export function decodeLine(line: Buffer): JournalRecord | string {
  if (line.length > MAX_RECORD_BYTES) return `longer than ${MAX_RECORD_BYTES} bytes`;
  const s = line.toString("utf8");
  const m = /^([0-9a-f]{8}) (.*)$/s.exec(s);
  if (!m) return "not a journal line (no CRC)";
  if (crcOf(m[2]) !== m[1]) return "CRC mismatch";
  let v: unknown;
  try {
    v = JSON.parse(m[2]);
  } catch {
    return "not JSON";
  }
  if (!check.Check(v)) return "not a journal record";
  if (Number.isNaN(Date.parse(v.at))) return "at is not a valid time";
  return v;
}

const crcOf = (json: string) => crc32(json).toString(16).padStart(8, "0");

/** The first whole record that starts inside a damaged line (after its damage), and where. */
function resync(line: Buffer): { record: JournalRecord; at: number } | null {
  const s = line.toString("latin1");
  const start = /[0-9a-f]{8} \{/g;
  start.lastIndex = 1;
  for (let m = start.exec(s); m; m = start.exec(s)) {
    const r = decodeLine(line.subarray(m.index));
    if (typeof r !== "string") return { record: r, at: m.index };
    start.lastIndex = m.index + 1;
  }
  return null;
}

interface Pending {
  line: Buffer;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class Journal {
  /** Write+fsync rounds and the records they committed (with group commit, far fewer rounds than records). */
  readonly stats = { commits: 0, records: 0 };
  private fh: FileHandle;
  /** The committed end: every byte before it is fsynced lines. */
  private size: number;
  private generation = 0;
  private queue: Pending[] = [];
  private scheduled = false;
  private closed = false;
  /** Every write, replay, clear and close in turn. */
  private lane: Promise<void> = Promise.resolve();
  /** The torn tail cut on open, reported by every replay until the next clear. */
  private repaired: DroppedLine | null;

  private constructor(readonly file: string, fh: FileHandle, size: number, repaired: DroppedLine | null, private readonly log: Logger) {
    this.fh = fh;
    this.size = size;
    this.repaired = repaired;
  }

  /**
   * The journal in `file` (Paths.offlineJournal), created 0600 in a 0700 dir if missing. A torn
   * last line (a crash mid-append) is cut off here, so appends go on from the last complete line.
   */
  static async open(file: string, o: { log?: Logger } = {}): Promise<Journal> {
    const log = o.log ?? logger("runtime.journal", { file });
    const dir = dirname(file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // A clear cut short before its rename: the journal itself is whole.
    await unlink(tmpOf(file)).catch(() => undefined);
    let created = false;
    let fh: FileHandle;
    try {
      fh = await open(file, constants.O_RDWR | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      fh = await open(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      created = true;
    }
    try {
      const all = await fh.readFile();
      let size = all.length;
      let repaired: DroppedLine | null = null;
      const lastNl = all.lastIndexOf(NL);
      if (lastNl + 1 < all.length) {
        size = lastNl + 1;
        const line = all.subarray(0, size).reduce((n, b) => (b === NL ? n + 1 : n), 0) + 1;
        repaired = { line, offset: size, bytes: all.length - size, reason: "torn last line (no newline): a write cut short" };
        await fh.truncate(size);
        await fh.sync();
        log.warn({ droppedBytes: repaired.bytes, offset: size }, `offline journal: dropped a torn last line of ${repaired.bytes} bytes`);
      }
      if (created) await syncDir(dir);
      return new Journal(file, fh, size, repaired, log);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  /** Bytes committed (fsynced) so far. */
  get bytes(): number {
    return this.size;
  }

  /** Journal one record; resolves once it is on disk (written and fsynced). */
  append(r: JournalRecord): Promise<void> {
    if (this.closed) return Promise.reject(unavailable("the offline journal is closed"));
    let line: Buffer;
    try {
      line = encodeRecord(r);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      if (this.scheduled) return;
      this.scheduled = true;
      void this.inLane(async () => {
        // Everything queued until now is this round; what comes during it is the next one.
        this.scheduled = false;
        await this.commit(this.queue.splice(0));
      }).catch(() => undefined);
    });
  }

  /** Every complete record, in order, with what was dropped (each drop logged). */
  replay(): Promise<ReplayResult> {
    return this.inLane(async () => {
      this.assertOpen();
      const buf = Buffer.alloc(this.size);
      if (this.size > 0) await this.fh.read(buf, 0, this.size, 0);
      const records: JournalRecord[] = [];
      const lines: DroppedLine[] = [];
      const seen = new Set<string>();
      let duplicates = 0;
      for (let start = 0, n = 1, end = 0; start < buf.length; start = end + 1, n++) {
        const nl = buf.indexOf(NL, start);
        end = nl === -1 ? buf.length : nl;
        const line = buf.subarray(start, end);
        let r = decodeLine(line);
        if (typeof r === "string") {
          // A cut line that something appended after (no newline between): the record after the cut is whole.
          const tail = resync(line);
          lines.push({ line: n, offset: start, bytes: tail ? tail.at : line.length + 1, reason: r });
          if (!tail) continue;
          r = tail.record;
        }
        if (seen.has(r.id)) duplicates++;
        else {
          seen.add(r.id);
          records.push(r);
        }
      }
      for (const d of lines) this.log.warn(d, `offline journal: line ${d.line} dropped (${d.reason})`);
      if (this.repaired) lines.push(this.repaired);
      const dropped = { records: lines.length, bytes: lines.reduce((n, d) => n + d.bytes, 0), lines };
      if (dropped.records) this.log.warn({ droppedRecords: dropped.records, droppedBytes: dropped.bytes, kept: records.length }, "offline journal: replayed with lines dropped");
      return { records, mark: { generation: this.generation, offset: this.size }, dropped, duplicates };
    });
  }

  /**
   * Drop the records up to `mark` (a replay's, once its records are flushed), keeping any appended
   * since; without a mark, drop everything committed. Crash-safe: the rest is written to a temp
   * file, fsynced and renamed over the journal, so a crash leaves either the old journal whole
   * (the next flush repeats, deduped by id) or the new one.
   */
  clear(mark?: JournalMark): Promise<void> {
    return this.inLane(async () => {
      this.assertOpen();
      const from = mark?.offset ?? this.size;
      if (mark && (mark.generation !== this.generation || mark.offset > this.size)) {
        throw conflict("offline journal: this mark is from before the last clear");
      }
      const rest = Buffer.alloc(this.size - from);
      if (rest.length > 0) await this.fh.read(rest, 0, rest.length, from);
      const tmp = tmpOf(this.file);
      const t = await open(tmp, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
      try {
        if (rest.length > 0) await writeAt(t, rest, 0);
        await t.sync();
      } catch (err) {
        await t.close().catch(() => undefined);
        await unlink(tmp).catch(() => undefined);
        throw err;
      }
      await rename(tmp, this.file);
      await syncDir(dirname(this.file));
      // The handle held the old file; appends go on into the new one.
      const old = this.fh;
      this.fh = t;
      this.size = rest.length;
      this.generation++;
      this.repaired = null;
      await old.close().catch(() => undefined);
      this.log.info({ droppedBytes: from, keptBytes: rest.length }, "offline journal cleared");
    });
  }

  /** Close once the appends made before it are committed; later calls fail with Unavailable. */
  close(): Promise<void> {
    if (this.closed) return this.lane;
    this.closed = true;
    return this.inLane(() => this.fh.close());
  }

  private async commit(batch: Pending[]): Promise<void> {
    if (batch.length === 0) return;
    try {
      const buf = batch.length === 1 ? batch[0].line : Buffer.concat(batch.map((p) => p.line));
      try {
        await writeAt(this.fh, buf, this.size);
        await this.fh.sync();
      } catch (err) {
        // Cut a partial write back: the next batch starts at a line boundary.
        await this.fh.truncate(this.size).catch(() => undefined);
        throw err;
      }
      this.size += buf.length;
      this.stats.commits++;
      this.stats.records += batch.length;
    } catch (err) {
      this.log.error({ err, records: batch.length }, "offline journal: append failed");
      for (const p of batch) p.reject(err);
      return;
    }
    for (const p of batch) p.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable("the offline journal is closed");
  }

  private inLane<T>(f: () => Promise<T>): Promise<T> {
    const run = this.lane.then(f);
    this.lane = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

const tmpOf = (file: string) => `${dirname(file)}/.${basename(file)}.clearing`;

async function writeAt(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off, position + off);
    off += bytesWritten;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
