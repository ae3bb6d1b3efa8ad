// conmon's k8s-file log format: records, their times, and lines joined from their parts. Pure
// (no fs), so the parsing rules are unit-tested on their own.
//
// A record is one line: `<RFC3339Nano time> <stdout|stderr> <P|F> <text>`. conmon writes a `P`
// (partial) record when a read from the container's pipe ends without a newline (its buffer is
// 8 KiB, or the program flushed half a line); the parts of one line are joined, per stream, up
// to the `F` record that ends it.

export type Stream = "stdout" | "stderr";

export interface LogRecord {
  /** As conmon wrote it (RFC 3339 with nanoseconds and an offset). */
  time: string;
  stream: Stream;
  partial: boolean;
  text: Buffer;
}

const SP = 0x20;

/** One record (without its newline), or null when the line is not one of conmon's. */
export function parseRecord(line: Buffer): LogRecord | null {
  const a = line.indexOf(SP);
  if (a <= 0) return null;
  // Bytes compared in place: this runs once per line of a read that may be a GiB long.
  const b = a + 7;
  if (line.length < b + 2 || line[b] !== SP || line[a + 1] !== 0x73 /* s */ || line[a + 2] !== 0x74 /* t */ || line[a + 3] !== 0x64 /* d */) return null;
  let stream: Stream;
  if (line[a + 4] === 0x6f && line[a + 5] === 0x75 && line[a + 6] === 0x74) stream = "stdout";
  else if (line[a + 4] === 0x65 && line[a + 5] === 0x72 && line[a + 6] === 0x72) stream = "stderr";
  else return null;
  const tag = line[b + 1];
  if ((tag !== 0x50 /* P */ && tag !== 0x46) /* F */ || (line.length > b + 2 && line[b + 2] !== SP)) return null;
  return {
    time: line.toString("latin1", 0, a),
    stream,
    partial: tag === 0x50,
    text: line.length > b + 3 ? line.subarray(b + 3) : EMPTY,
  };
}

const EMPTY = Buffer.alloc(0);

/**
 * The hot path's check, allocation-free: where the text of a complete (F) record starts, or 0
 * for anything else (P records, junk: parseRecord then). The time ends 10 bytes before the text
 * (` stdout F `), and the byte 6 before it tells the stream (o: stdout, e: stderr).
 */
export function fullRecordText(line: Buffer): number {
  const a = line.indexOf(SP);
  if (a <= 0 || line.length < a + 10 || line[a + 7] !== SP || line[a + 8] !== 0x46 || line[a + 9] !== SP) return 0;
  if (line[a + 1] !== 0x73 || line[a + 2] !== 0x74 || line[a + 3] !== 0x64) return 0;
  const out = line[a + 4] === 0x6f && line[a + 5] === 0x75 && line[a + 6] === 0x74;
  const err = line[a + 4] === 0x65 && line[a + 5] === 0x72 && line[a + 6] === 0x72;
  return out || err ? a + 10 : 0;
}

const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)$/;

/** RFC 3339 (any fraction up to ns, Z or an offset) → µs since the epoch; NaN when it is not one. */
export function timeMicros(s: string): number {
  const m = RFC3339.exec(s);
  if (!m) return NaN;
  const [, y, mo, d, h, mi, sec, frac = "", zone] = m;
  const ms = Date.UTC(+y, +mo - 1, +d, +h, +mi, +sec);
  if (+mo < 1 || +mo > 12 || +d < 1 || +d > 31 || +h > 23 || +mi > 59 || +sec > 60) return NaN;
  let offsetMin = 0;
  if (zone !== "Z" && zone !== "z") {
    const z = zone.replace(":", "");
    offsetMin = (z[0] === "-" ? -1 : 1) * (Number(z.slice(1, 3)) * 60 + Number(z.slice(3, 5)));
  }
  return (ms - offsetMin * 60_000) * 1000 + Number((frac + "000000").slice(0, 6));
}

/** A joined line longer than this goes out in pieces of this size: the daemon's memory is bounded. */
export const MAX_LINE_BYTES = 1024 * 1024;

export interface LogLineOut {
  /** The time of the record that ended the line. */
  time: string;
  stream: Stream;
  text: Buffer;
}

/** Joins P records to their F record, per stream, with the line length bounded. */
export class LineJoiner {
  private readonly parts: Record<Stream, Buffer[]> = { stdout: [], stderr: [] };
  private readonly size: Record<Stream, number> = { stdout: 0, stderr: 0 };
  private readonly lastTime: Record<Stream, string> = { stdout: "", stderr: "" };

  /** The lines this record completes (none for a partial one, unless the bound is reached). */
  push(r: LogRecord): LogLineOut[] {
    const out: LogLineOut[] = [];
    const s = r.stream;
    let text = r.text;
    while (this.size[s] + text.length > MAX_LINE_BYTES) {
      const room = MAX_LINE_BYTES - this.size[s];
      this.parts[s].push(text.subarray(0, room));
      out.push({ time: r.time, stream: s, text: this.take(s) });
      text = text.subarray(room);
    }
    if (r.partial) {
      if (text.length) {
        // Copied: the record's buffer is the reader's, reused for the next chunk.
        this.parts[s].push(Buffer.from(text));
        this.size[s] += text.length;
        this.lastTime[s] = r.time;
      }
      return out;
    }
    this.parts[s].push(text);
    out.push({ time: r.time, stream: s, text: this.take(s) });
    return out;
  }

  /** Parts still waiting for their F record: a line the program has not finished. */
  pending(stream: Stream): boolean {
    return this.parts[stream].length > 0;
  }

  /** Unfinished lines as they are (at the end of a non-following read), dated by their last part. */
  flush(): LogLineOut[] {
    const out: LogLineOut[] = [];
    for (const s of ["stdout", "stderr"] as const) if (this.parts[s].length) out.push({ time: this.lastTime[s], stream: s, text: this.take(s) });
    return out;
  }

  private take(s: Stream): Buffer {
    const b = this.parts[s].length === 1 ? this.parts[s][0] : Buffer.concat(this.parts[s]);
    this.parts[s] = [];
    this.size[s] = 0;
    return b;
  }
}

/** One line of the HTTP answer: the text, a newline, and the time first when asked. */
export function formatLine(l: LogLineOut, timestamps: boolean): Buffer {
  const head = timestamps ? Buffer.from(`${l.time} `, "latin1") : null;
  const nl = Buffer.from("\n");
  return head ? Buffer.concat([head, l.text, nl]) : Buffer.concat([l.text, nl]);
}
