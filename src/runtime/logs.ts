// Reading a container's log (its k8s-file set, see log-files.ts) as a stream of text lines.
// Memory stays bounded whatever the log's size: files are read in chunks, `tail` scans backwards
// from the end and counts lines without keeping them, `since` bisects a file by time, and the
// output is a Readable that reads on only as fast as the client takes it.
import { watch, type FSWatcher } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { currentIno, openLogFiles, type OpenLog } from "./log-files.js";
import { fullRecordText, LineJoiner, MAX_LINE_BYTES, parseRecord, timeMicros, type LogLineOut, type Stream } from "./k8s-log.js";

export interface LogQuery {
  /** The last N lines (after `sinceUs`); undefined: all. */
  tail?: number;
  /** Only lines at or after this time (µs since the epoch). */
  sinceUs?: number;
  timestamps?: boolean;
  /** Keep reading new lines until `ended` fires (then drain) or the stream is destroyed. */
  follow?: boolean;
  /** The container has ended: a follower reads what is left and finishes. */
  ended?: AbortSignal;
  /** How often a follower looks without a change notice (fs.watch can miss). Default 250 ms. */
  pollMs?: number;
}

const CHUNK = 64 * 1024;
/** Output is sent in pieces of about this size (fewer, larger writes). */
const BATCH = 64 * 1024;
/** A record longer than this is not conmon's (its records are ≤ 8 KiB + header): skipped. */
const MAX_RECORD = MAX_LINE_BYTES + CHUNK;
/** How far before a `since` or `tail` start to look for the first parts of a split line. */
const LOOKBACK = 256 * 1024;

/** A place in the file set: file index (oldest 0) and byte offset. */
interface Pos {
  file: number;
  offset: number;
}
const before = (a: Pos, b: Pos) => a.file < b.file || (a.file === b.file && a.offset < b.offset);

/** The log at `base` (ctr.log) as text lines. */
export function readLogs(base: string, q: LogQuery = {}): Readable {
  const ac = new AbortController();
  const gen = lines(base, q, ac.signal);
  let pulling = false;
  return new Readable({
    highWaterMark: BATCH,
    read() {
      if (pulling) return;
      pulling = true;
      void (async () => {
        try {
          for (;;) {
            const r = await gen.next();
            if (r.done) return void this.push(null);
            if (!this.push(r.value)) return;
          }
        } catch (err) {
          this.destroy(err as Error);
        } finally {
          pulling = false;
        }
      })();
    },
    destroy(err, cb) {
      // A follower waiting for news wakes up, sees the abort and closes its files.
      ac.abort();
      gen.return(undefined).then(() => cb(err), () => cb(err));
    },
  });
}

/** The lines with their stream and time, in an array: for small logs (tests, tools) only. */
export async function readLogLines(base: string, q: Pick<LogQuery, "tail" | "sinceUs"> = {}): Promise<LogLineOut[]> {
  const keep: LogLineOut[] = [];
  for await (const _ of lines(base, q, new AbortController().signal, keep)) { /* lines land in keep */ }
  return keep;
}

async function* lines(base: string, q: LogQuery, abort: AbortSignal, keep?: LogLineOut[]): AsyncGenerator<Buffer, void, undefined> {
  const files = await openLogFiles(base);
  const out = new Output(q.timestamps ?? false, keep);
  try {
    const sizes = await Promise.all(files.map(async (f) => (await f.fh.stat()).size));
    const end: Pos = files.length ? { file: files.length - 1, offset: sizes[files.length - 1] } : { file: 0, offset: 0 };
    let start: Pos = { file: 0, offset: 0 };
    let first: Pos = start;
    let align = false;
    if (q.tail !== undefined) {
      ({ start, first } = q.tail === 0 ? { start: end, first: end } : await findTail(files, sizes, q.tail, q.sinceUs, end));
    } else if (q.sinceUs !== undefined) {
      start = await findSince(files, sizes, q.sinceUs, end);
      align = start.offset > 0;
    }
    const r: Reader = {
      joiner: new LineJoiner(),
      out,
      emit(l, at) {
        if (before(at, first)) return;
        if (q.sinceUs !== undefined && !(timeMicros(l.time) >= q.sinceUs)) return;
        out.add(l);
      },
      // Without a time filter, a whole line is copied straight from the read buffer.
      fast: q.sinceUs === undefined ? (file, offset) => file > first.file || (file === first.file && offset >= first.offset) : null,
    };
    let offset = 0;
    for (let i = start.file; i < files.length; i++) {
      offset = yield* readOn(r, files[i].fh, i, i === start.file ? start.offset : 0, i === start.file && align);
      if (abort.aborted) return;
    }
    if (q.follow && !abort.aborted && !q.ended?.aborted) {
      // Only the newest file is read on: the others need no descriptor for the follow's lifetime.
      await Promise.all(files.slice(0, -1).map((f) => f.fh.close().catch(() => undefined)));
      yield* follow(base, files, offset, r, q, abort);
    }
    if (abort.aborted) return;
    for (const l of r.joiner.flush()) out.add(l);
    yield* out.take(0);
  } finally {
    await Promise.all(files.map((f) => f.fh.close().catch(() => undefined)));
  }
}

interface Reader {
  joiner: LineJoiner;
  out: Output;
  /** A completed line and where its last record starts: sent or filtered out. */
  emit(l: LogLineOut, at: Pos): void;
  /** Whether a one-record line at this place is sent; null: every line goes through emit. */
  fast: ((file: number, offset: number) => boolean) | null;
}

/** Read file `i` from `from` to its current end, sending batches as they fill; the end offset. */
async function* readOn(r: Reader, fh: FileHandle, i: number, from: number, align: boolean): AsyncGenerator<Buffer, number, undefined> {
  let offset = from;
  for (;;) {
    const fast = r.fast;
    const step = await forward(fh, offset, align, r.joiner, (l, o) => r.emit(l, { file: i, offset: o }), r.out, fast && ((o) => fast(i, o)));
    offset = step.offset;
    align = false;
    yield* r.out.take(step.more ? BATCH : 0);
    if (!step.more) return offset;
  }
}

/** Formatted lines waiting to be sent. */
class Output {
  private ready: Buffer[] = [];
  private readySize = 0;
  private cur: Buffer | null = null;
  private len = 0;
  constructor(
    private readonly timestamps: boolean,
    private readonly keep?: LogLineOut[],
  ) {}
  /** Copied into the current batch: one buffer per ~64 KiB sent, not one per line. */
  add(l: LogLineOut): void {
    if (this.keep) return void this.keep.push({ ...l, text: Buffer.from(l.text) });
    const need = (this.timestamps ? l.time.length + 1 : 0) + l.text.length + 1;
    if (!this.cur || need > this.cur.length - this.len) {
      this.seal();
      this.cur = Buffer.allocUnsafe(Math.max(BATCH, need));
    }
    const b = this.cur;
    if (this.timestamps) {
      this.len += b.write(l.time, this.len, "latin1");
      b[this.len++] = 0x20;
    }
    this.len += l.text.copy(b, this.len);
    b[this.len++] = 0x0a;
  }
  /** A record's bytes as a line: its time (`line[0, timeEnd)`) when asked, its text, a newline. */
  addBytes(line: Buffer, timeEnd: number, textStart: number): void {
    if (this.keep) {
      const r = parseRecord(line);
      if (r) this.add({ time: r.time, stream: r.stream, text: r.text });
      return;
    }
    const need = (this.timestamps ? timeEnd + 1 : 0) + line.length - textStart + 1;
    if (!this.cur || need > this.cur.length - this.len) {
      this.seal();
      this.cur = Buffer.allocUnsafe(Math.max(BATCH, need));
    }
    const b = this.cur;
    if (this.timestamps) {
      this.len += line.copy(b, this.len, 0, timeEnd);
      b[this.len++] = 0x20;
    }
    this.len += line.copy(b, this.len, textStart);
    b[this.len++] = 0x0a;
  }
  private seal(): void {
    if (this.cur && this.len) {
      this.ready.push(this.cur.subarray(0, this.len));
      this.readySize += this.len;
    }
    this.cur = null;
    this.len = 0;
  }
  /** The waiting batches when at least `min` bytes wait (everything with min 0). */
  take(min: number): Buffer[] {
    if (this.pending === 0 || this.pending < min) return [];
    this.seal();
    const out = this.ready;
    this.ready = [];
    this.readySize = 0;
    return out;
  }
  get pending(): number {
    return this.readySize + this.len;
  }
}

/**
 * Reads complete records from `from` to the end of the file as it is now, feeding lines to
 * `emit` (with the offset of the record that ended them). A record still being written (no
 * newline yet) is left for the next call. Returns the offset after the last complete record.
 */
async function forward(
  fh: FileHandle,
  from: number,
  align: boolean,
  joiner: LineJoiner,
  emit: (l: LogLineOut, offset: number) => void,
  out: Output,
  fast: ((offset: number) => boolean) | null,
): Promise<{ offset: number; more: boolean }> {
  let pos = from;
  let carry: Buffer | null = null;
  let carryAt = from;
  let skipping = align;
  // Reused: what outlives a read (parts, carry, output) is copied out of it.
  const buf = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, pos);
    if (bytesRead === 0) return { offset: carry ? carryAt : pos, more: false };
    pos += bytesRead;
    let data = buf.subarray(0, bytesRead);
    let base = pos - bytesRead;
    if (carry) {
      data = Buffer.concat([carry, data]);
      base = carryAt;
      carry = null;
    }
    let i = 0;
    for (;;) {
      const nl = data.indexOf(0x0a, i);
      if (nl < 0) break;
      if (skipping) {
        skipping = false;
      } else if (fast && fastLine(data, i, nl, joiner, out, fast(base + i))) {
        /* copied (or filtered) without parsing into objects */
      } else {
        const r = parseRecord(data.subarray(i, nl));
        if (r) for (const l of joiner.push(r)) emit(l, base + i);
      }
      i = nl + 1;
    }
    if (i < data.length) {
      if (data.length - i > MAX_RECORD) {
        // Not one of conmon's records: skip to its end.
        skipping = true;
      } else {
        carry = Buffer.from(data.subarray(i));
        carryAt = base + i;
      }
    }
    // Let the caller send what is ready before reading on (bounded memory).
    if (out.pending >= BATCH * 4) return { offset: carry ? carryAt : pos, more: true };
  }
}

/** A complete line in one F record, no parts of its stream waiting: out as bytes. False: parse it. */
function fastLine(data: Buffer, i: number, nl: number, joiner: LineJoiner, out: Output, send: boolean): boolean {
  const line = data.subarray(i, nl);
  const text = fullRecordText(line);
  if (text === 0 || joiner.pending(line[text - 6] === 0x6f ? "stdout" : "stderr")) return false;
  if (send) out.addBytes(line, text - 10, text);
  return true;
}

interface BackRecord {
  line: Buffer;
  offset: number;
}

/** The complete records of a file from its end backwards, each with its offset. */
async function* backward(fh: FileHandle, size: number): AsyncGenerator<BackRecord> {
  let end = size;
  let carry: Buffer = Buffer.alloc(0);
  // What follows the last newline is a record still being written: skipped like junk.
  let skipping = true;
  while (end > 0) {
    const start = Math.max(0, end - CHUNK);
    const buf = Buffer.allocUnsafe(end - start);
    const { bytesRead } = await fh.read(buf, 0, end - start, start);
    const data = carry.length ? Buffer.concat([buf.subarray(0, bytesRead), carry]) : buf.subarray(0, bytesRead);
    let lineEnd = data.length;
    for (;;) {
      // (lastIndexOf counts a negative offset from the end: never pass one.)
      const nl = lineEnd > 0 ? data.lastIndexOf(0x0a, lineEnd - 1) : -1;
      if (nl < 0) break;
      if (skipping) skipping = false;
      else yield { line: data.subarray(nl + 1, lineEnd), offset: start + nl + 1 };
      lineEnd = nl;
    }
    if (start === 0) {
      if (!skipping && lineEnd > 0) yield { line: data.subarray(0, lineEnd), offset: 0 };
      return;
    }
    if (lineEnd > MAX_RECORD) {
      carry = Buffer.alloc(0);
      skipping = true;
    } else {
      carry = Buffer.from(data.subarray(0, lineEnd));
    }
    end = start;
  }
}

/**
 * Where the last `n` lines (at or after `sinceUs`) start: `first` is the record that ends the
 * first of them, `start` the earliest part of any of them (a split line's first parts come
 * before the end of an earlier line of the other stream).
 */
async function findTail(files: OpenLog[], sizes: number[], n: number, sinceUs: number | undefined, end: Pos): Promise<{ start: Pos; first: Pos }> {
  let count = 0;
  let start: Pos | null = null;
  let counting = true;
  let scanned = 0;
  const seen: Record<Stream, boolean> = { stdout: false, stderr: false };
  const open: Record<Stream, boolean> = { stdout: false, stderr: false };
  let first: Pos | null = null;
  for (let fi = files.length - 1; fi >= 0; fi--) {
    for await (const rec of backward(files[fi].fh, sizes[fi])) {
      const r = parseRecord(rec.line);
      if (!r) continue;
      const pos = { file: fi, offset: rec.offset };
      const s = r.stream;
      if (counting) {
        // A line ends with an F record, or is still open at the end (its last part).
        if (!r.partial || !seen[s]) {
          if (sinceUs !== undefined && !(timeMicros(r.time) >= sinceUs)) {
            counting = false;
          } else {
            seen[s] = open[s] = true;
            count++;
            first = start = pos;
            if (count === n) counting = false;
            continue;
          }
        } else {
          start = pos;
          continue;
        }
      }
      // Enough lines: only the first parts of lines already counted are still wanted.
      if (!r.partial) open[s] = false;
      else if (open[s]) start = pos;
      scanned += rec.line.length + 1;
      if ((!open.stdout && !open.stderr) || scanned > LOOKBACK) return { start: start ?? end, first: first ?? end };
    }
  }
  // Fewer lines than asked: all of them.
  if (counting) return { start: { file: 0, offset: 0 }, first: { file: 0, offset: 0 } };
  return { start: start ?? end, first: first ?? end };
}

/** The time of a file's last complete record, µs (NaN when it has none). */
async function lastTime(fh: FileHandle, size: number): Promise<number> {
  for await (const rec of backward(fh, size)) {
    const r = parseRecord(rec.line);
    if (r) return timeMicros(r.time);
  }
  return NaN;
}

/** The first complete record starting after `offset` (at 0: at it): where, and its time in µs. */
async function recordAfter(fh: FileHandle, offset: number, size: number): Promise<{ at: number; us: number } | null> {
  const buf = Buffer.allocUnsafe(Math.min(16 * 1024, size - offset));
  const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
  const data = buf.subarray(0, bytesRead);
  let i = 0;
  if (offset > 0) {
    const nl = data.indexOf(0x0a);
    if (nl < 0) return null;
    i = nl + 1;
  }
  for (;;) {
    const nl = data.indexOf(0x0a, i);
    if (nl < 0) return null;
    const r = parseRecord(data.subarray(i, nl));
    if (r) return { at: offset + i, us: timeMicros(r.time) };
    i = nl + 1;
  }
}

/**
 * A place at or before the first record at or after `sinceUs`: files that end before it are
 * skipped, and the file it falls in is bisected (conmon writes records in time order).
 */
async function findSince(files: OpenLog[], sizes: number[], sinceUs: number, end: Pos): Promise<Pos> {
  for (let fi = 0; fi < files.length; fi++) {
    const t = await lastTime(files[fi].fh, sizes[fi]);
    if (t < sinceUs) continue;
    let lo = 0;
    let hi = sizes[fi];
    while (hi - lo > CHUNK) {
      const mid = Math.floor((lo + hi) / 2);
      const r = await recordAfter(files[fi].fh, mid, sizes[fi]);
      if (!r || !(r.us < sinceUs)) hi = mid;
      else lo = r.at;
    }
    return { file: fi, offset: Math.max(0, lo - LOOKBACK) };
  }
  return end;
}

/**
 * Keep reading the newest file. A rotation shows as `ctr.log` naming another inode: conmon has
 * closed the old file by then, so it is read to its end and the newer files follow.
 */
async function* follow(base: string, files: OpenLog[], offset0: number, r: Reader, q: LogQuery, abort: AbortSignal): AsyncGenerator<Buffer, void, undefined> {
  let wake: (() => void) | null = null;
  let changed = false;
  const notify = () => {
    changed = true;
    wake?.();
  };
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(dirname(base), notify);
    watcher.on("error", () => undefined);
  } catch {
    /* polling alone */
  }
  abort.addEventListener("abort", notify);
  q.ended?.addEventListener("abort", notify);
  let idx = files.length - 1;
  let offset = offset0;
  let draining = false;
  try {
    for (;;) {
      if (abort.aborted) return;
      const ending = q.ended?.aborted ?? false;
      changed = false;
      if (idx >= 0) offset = yield* readOn(r, files[idx].fh, idx, offset, false);
      const ino = await currentIno(base);
      if (ino !== null && (idx < 0 || ino !== files[idx].ino)) {
        // Rotated: conmon closed the old file before the new one appeared; finish it first.
        if (idx >= 0) offset = yield* readOn(r, files[idx].fh, idx, offset, false);
        const newer = await openLogFiles(base, new Set(idx >= 0 ? [files[idx].ino] : []));
        if (newer.length) {
          // Done with ours: a long follow across many rotations holds one file open, not all.
          if (idx >= 0) await files[idx].fh.close().catch(() => undefined);
          files.push(...newer);
          // Files rotated past us while we were away are read whole; the newest is followed.
          for (let i = files.length - newer.length; i < files.length - 1; i++) {
            yield* readOn(r, files[i].fh, i, 0, false);
            await files[i].fh.close().catch(() => undefined);
          }
          idx = files.length - 1;
          offset = 0;
          continue;
        }
      }
      if (ending) {
        // One more pass after the end was seen, so nothing written before it is missed.
        if (draining) return;
        draining = true;
        continue;
      }
      if (!changed) {
        await new Promise<void>((res) => {
          const t = setTimeout(res, q.pollMs ?? 250);
          wake = () => {
            clearTimeout(t);
            res();
          };
        });
        wake = null;
      }
    }
  } finally {
    watcher?.close();
    abort.removeEventListener("abort", notify);
    q.ended?.removeEventListener("abort", notify);
  }
}
