// conmon's k8s-file records and the query values of GET /v1/containers/{ref}/logs, given/when/then.
import { describe, expect, it } from "vitest";
import { BerthError } from "../../src/shared/errors.js";
import { durationMicros, MAX_TAIL, parseSince, parseTail } from "../../src/api/logs-query.js";
import { formatLine, fullRecordText, LineJoiner, MAX_LINE_BYTES, parseRecord, timeMicros } from "../../src/runtime/k8s-log.js";

const rec = (s: string) => parseRecord(Buffer.from(s));
const T = "2024-05-01T10:00:00.123456789+00:00";

describe("parseRecord", () => {
  it("given an F record, when parsed, then time, stream and text come apart", () => {
    const r = rec(`${T} stdout F hello world`)!;
    expect(r).toMatchObject({ time: T, stream: "stdout", partial: false });
    expect(r.text.toString()).toBe("hello world");
  });

  it("given a P record or an empty line of output, then partial and empty text are kept", () => {
    expect(rec(`${T} stderr P part`)).toMatchObject({ stream: "stderr", partial: true });
    expect(rec(`${T} stdout F `)!.text.length).toBe(0);
    expect(rec(`${T} stdout F`)!.text.length).toBe(0);
  });

  it("given text with spaces and bytes that are not UTF-8, then the text is kept byte for byte", () => {
    const line = Buffer.concat([Buffer.from(`${T} stdout F  a  b `), Buffer.from([0xff, 0xfe])]);
    expect([...parseRecord(line)!.text]).toEqual([...Buffer.from(" a  b "), 0xff, 0xfe]);
  });

  it.each(["", "garbage", `${T} stdin F x`, `${T} stdout X x`, `${T} stdout`, ` stdout F x`])("given '%s', then it is no record", (s) => {
    expect(rec(s)).toBeNull();
  });
});

describe("fullRecordText (the allocation-free check)", () => {
  it("given F records, then where the text starts; given anything else, then 0", () => {
    expect(fullRecordText(Buffer.from(`${T} stdout F hi`))).toBe(T.length + 10);
    expect(fullRecordText(Buffer.from(`${T} stderr F `))).toBe(T.length + 10);
    for (const s of [`${T} stdout P hi`, `${T} stdout F`, `${T} stdin F x`, `${T} stdoutF x`, "junk", ""]) expect(fullRecordText(Buffer.from(s)), s).toBe(0);
  });
});

describe("timeMicros", () => {
  it("given conmon's nanosecond times and offsets, then µs since the epoch", () => {
    const base = Date.UTC(2024, 4, 1, 10, 0, 0) * 1000;
    expect(timeMicros(T)).toBe(base + 123456);
    expect(timeMicros("2024-05-01T10:00:00Z")).toBe(base);
    expect(timeMicros("2024-05-01T12:00:00.5+02:00")).toBe(base + 500000);
    expect(timeMicros("2024-05-01T09:30:00-00:30")).toBe(base);
  });

  it.each(["", "2024-05-01", "2024-13-01T10:00:00Z", "2024-05-01T25:00:00Z", "yesterday", "2024-05-01T10:00:00"])("given '%s', then NaN", (s) => {
    expect(timeMicros(s)).toBeNaN();
  });
});

describe("parseSince", () => {
  const now = Date.UTC(2024, 4, 1, 12, 0, 0) * 1000;

  it("given a duration, then that long before now", () => {
    expect(parseSince("10m", now)).toBe(now - 600e6);
    expect(parseSince("1h30m", now)).toBe(now - 5400e6);
    expect(parseSince("1.5s", now)).toBe(now - 1.5e6);
    expect(parseSince("250ms", now)).toBe(now - 250e3);
    expect(parseSince("0s", now)).toBe(now);
    expect(durationMicros("2h")).toBe(7200e6);
  });

  it("given an RFC 3339 time or Unix seconds, then that time", () => {
    expect(parseSince("2024-05-01T10:00:00Z", now)).toBe(Date.UTC(2024, 4, 1, 10) * 1000);
    expect(parseSince("2024-05-01T12:00:00.123456789+02:00", now)).toBe(Date.UTC(2024, 4, 1, 10) * 1000 + 123456);
    expect(parseSince("1714557600", now)).toBe(1714557600e6);
    expect(parseSince("1714557600.25", now)).toBe(1714557600250000);
  });

  it("given a time in the future, then InvalidArgument saying so", () => {
    expect(() => parseSince("2024-05-01T12:00:01Z", now)).toThrow(/in the future/);
    expect(() => parseSince("4000000000", now)).toThrow(/in the future/);
  });

  it.each(["", "soon", "-10m", "10 m", "1d", "2024-05-01", "2024-05-01T10:00:00", "2024-02-30T10:00:00Z", "10m-", "m"])("given '%s', then InvalidArgument", (s) => {
    try {
      parseSince(s, now);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe("InvalidArgument");
      expect((err as Error).message).toMatch(/is not a time/);
    }
  });
});

describe("parseTail", () => {
  it("given a count, all, or nothing, then the count or every line", () => {
    expect(parseTail("0")).toBe(0);
    expect(parseTail("100")).toBe(100);
    expect(parseTail(String(MAX_TAIL))).toBe(MAX_TAIL);
    expect(parseTail("all")).toBeUndefined();
    expect(parseTail(undefined)).toBeUndefined();
  });

  it.each(["-1", "1.5", "abc", "", String(MAX_TAIL + 1), "99999999999", "1e3", " 5"])("given '%s', then InvalidArgument naming the limit", (s) => {
    expect(() => parseTail(s)).toThrow(new RegExp(`0 to ${MAX_TAIL}`));
  });
});

describe("LineJoiner", () => {
  const texts = (ls: { text: Buffer }[]) => ls.map((l) => l.text.toString());

  it("given P parts then an F, when pushed, then one line of their text, dated by the F", () => {
    const j = new LineJoiner();
    expect(j.push(rec(`${T} stdout P ab`)!)).toEqual([]);
    expect(j.push(rec(`${T} stdout P cd`)!)).toEqual([]);
    const out = j.push(rec(`2024-05-01T10:00:01Z stdout F ef`)!);
    expect(texts(out)).toEqual(["abcdef"]);
    expect(out[0].time).toBe("2024-05-01T10:00:01Z");
  });

  it("given parts of both streams interleaved, then each stream is joined on its own", () => {
    const j = new LineJoiner();
    const out = [
      ...j.push(rec(`${T} stdout P out-`)!),
      ...j.push(rec(`${T} stderr P err-`)!),
      ...j.push(rec(`${T} stderr F 1`)!),
      ...j.push(rec(`${T} stdout F 2`)!),
    ];
    expect(out.map((l) => `${l.stream}:${l.text}`)).toEqual(["stderr:err-1", "stdout:out-2"]);
  });

  it("given an unfinished line, when flushed, then it comes out as it is", () => {
    const j = new LineJoiner();
    j.push(rec(`${T} stdout P no newline`)!);
    expect(j.pending("stdout")).toBe(true);
    expect(texts(j.flush())).toEqual(["no newline"]);
    expect(j.flush()).toEqual([]);
  });

  it("given a line longer than the bound, then it goes out in pieces of the bound", () => {
    const j = new LineJoiner();
    const part = Buffer.concat([Buffer.from(`${T} stdout P `), Buffer.alloc(600 * 1024, 0x61)]);
    expect(j.push(parseRecord(part)!)).toEqual([]);
    const out = j.push(parseRecord(part)!);
    expect(out.map((l) => l.text.length)).toEqual([MAX_LINE_BYTES]);
    expect(j.push(rec(`${T} stdout F !`)!).map((l) => l.text.length)).toEqual([1200 * 1024 - MAX_LINE_BYTES + 1]);
  });
});

describe("formatLine", () => {
  it("given timestamps, then the time, a space, the text, a newline", () => {
    const l = { time: T, stream: "stdout" as const, text: Buffer.from("x") };
    expect(formatLine(l, true).toString()).toBe(`${T} x\n`);
    expect(formatLine(l, false).toString()).toBe("x\n");
  });
});
