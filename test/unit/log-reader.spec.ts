// The log reader over k8s-file sets written by the test (the way conmon writes them): tail from the
// end across chunk boundaries and rotated files, split lines, since, follow across a rotation,
// and the rotation's file shifting. Files live in a temp dir; no process is started.
import { appendFile, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readLogs, type LogQuery } from "../../src/runtime/logs.js";
import { rotate, rotatedIndexes } from "../../src/runtime/log-files.js";

let dir: string;
let base: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "berth-logs-"));
  base = join(dir, "ctr.log");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2024, 4, 1, 10, 0, 0);
/** conmon's time format, i seconds after T0. */
const ts = (i: number) => new Date(T0 + i * 1000).toISOString().replace("Z", "123456+00:00");
const rec = (i: number, text: string, stream = "stdout", tag = "F") => `${ts(i)} ${stream} ${tag} ${text}\n`;

async function collect(q: LogQuery = {}): Promise<string[]> {
  let s = "";
  for await (const chunk of readLogs(base, q)) s += chunk.toString();
  return s.split("\n").slice(0, -1);
}

/** n lines `line<i>` of varied length, one per second from `from`, as one file's text. */
const lines = (from: number, n: number) => Array.from({ length: n }, (_, k) => rec(from + k, `line${from + k} ${"x".repeat((from + k) % 97)}`)).join("");
/** What conmon does on the reopen message: a fresh ctr.log through a rename. */
const reopen = async () => {
  await writeFile(`${base}.tmp`, "");
  await rename(`${base}.tmp`, base);
};
const texts = (from: number, n: number) => Array.from({ length: n }, (_, k) => `line${from + k} ${"x".repeat((from + k) % 97)}`);

describe("readLogs without follow", () => {
  it("given no log file yet, then nothing", async () => {
    expect(await collect()).toEqual([]);
    expect(await collect({ tail: 5 })).toEqual([]);
  });

  it("given a file larger than many chunks, when tail=N, then exactly the last N lines", async () => {
    await writeFile(base, lines(0, 5000)); // ≈ 450 KiB: lines straddle the 64 KiB chunks
    for (const n of [1, 2, 99, 1234, 4999]) expect(await collect({ tail: n }), `tail=${n}`).toEqual(texts(5000 - n, n));
    expect(await collect({ tail: 5000 })).toEqual(texts(0, 5000));
    expect(await collect({ tail: 100000 })).toEqual(texts(0, 5000));
    expect(await collect({ tail: 0 })).toEqual([]);
    expect(await collect()).toEqual(texts(0, 5000));
  });

  it("given rotated files, when tail spans them, then the lines in order across files", async () => {
    await writeFile(`${base}.2`, lines(0, 300));
    await writeFile(`${base}.1`, lines(300, 300));
    await writeFile(base, lines(600, 50));
    expect(await collect({ tail: 100 })).toEqual(texts(550, 100));
    expect(await collect({ tail: 400 })).toEqual(texts(250, 400));
    expect(await collect()).toEqual(texts(0, 650));
  });

  it("given a line split into P parts (also across a rotation), then one joined line, counted once", async () => {
    await writeFile(`${base}.1`, rec(0, "a") + rec(1, "big-", "stdout", "P"));
    await writeFile(base, rec(2, "mid-", "stdout", "P") + rec(3, "err", "stderr") + rec(4, "end") + rec(5, "z"));
    expect(await collect()).toEqual(["a", "err", "big-mid-end", "z"]);
    expect(await collect({ tail: 2 })).toEqual(["big-mid-end", "z"]);
    expect(await collect({ tail: 3 })).toEqual(["err", "big-mid-end", "z"]);
  });

  it("given an unfinished last line and a record still being written, then the line as it is and no half record", async () => {
    await writeFile(base, rec(0, "a") + rec(1, "no newline yet", "stdout", "P") + `${ts(2)} stdout F half-writ`);
    expect(await collect()).toEqual(["a", "no newline yet"]);
    expect(await collect({ tail: 1 })).toEqual(["no newline yet"]);
  });

  it("given lines that are not conmon's, then they are skipped", async () => {
    await writeFile(base, rec(0, "a") + "garbage\n\n" + rec(1, "b"));
    expect(await collect()).toEqual(["a", "b"]);
    expect(await collect({ tail: 1 })).toEqual(["b"]);
  });

  it("given since, then the lines at or after it, found by bisection in a large file and across files", async () => {
    await writeFile(`${base}.1`, lines(0, 3000));
    await writeFile(base, lines(3000, 3000));
    const us = (i: number) => (T0 + i * 1000) * 1000;
    expect(await collect({ sinceUs: us(5990) })).toEqual(texts(5990, 10));
    expect(await collect({ sinceUs: us(2995) })).toEqual(texts(2995, 3005));
    expect(await collect({ sinceUs: us(1234) + 500 })).toEqual(texts(1235, 6000 - 1235));
    expect(await collect({ sinceUs: us(0) - 1 })).toEqual(texts(0, 6000));
    expect(await collect({ sinceUs: us(7000) })).toEqual([]);
    // tail counts among the lines since.
    expect(await collect({ sinceUs: us(5990), tail: 3 })).toEqual(texts(5997, 3));
    expect(await collect({ sinceUs: us(5990), tail: 50 })).toEqual(texts(5990, 10));
  });

  it("given timestamps, then each line starts with its record's time", async () => {
    await writeFile(base, rec(0, "a") + rec(1, "b"));
    expect(await collect({ timestamps: true, tail: 1 })).toEqual([`${ts(1)} b`]);
  });
});

describe("readLogs with follow", () => {
  const next = async (it: AsyncIterator<Buffer>, want: number, got: string[]) => {
    while (got.length < want) {
      const r = await it.next();
      if (r.done) break;
      got.push(...r.value.toString().split("\n").slice(0, -1));
    }
    return got;
  };

  it("given a follower, when lines are appended and the log rotates, then every line arrives once, in order", async () => {
    await writeFile(base, lines(0, 10));
    const ended = new AbortController();
    const stream = readLogs(base, { follow: true, tail: 2, ended: ended.signal, pollMs: 50 });
    const it = stream[Symbol.asyncIterator]();
    const got: string[] = [];
    expect(await next(it, 2, got)).toEqual(texts(8, 2));
    await appendFile(base, lines(10, 5));
    await next(it, 7, got);
    // A rotation as the daemon does it, the old file written on until conmon's reopen.
    const fifo = join(dir, "ctl");
    await rotate(base, fifo, 5);
    await appendFile(`${base}.1`, lines(15, 3));
    await reopen();
    await appendFile(base, lines(18, 4));
    await next(it, 14, got);
    // Two rotations before the follower may look again: the file between is read whole.
    await appendFile(base, lines(22, 2));
    await rotate(base, fifo, 5);
    await reopen();
    await appendFile(base, lines(24, 2));
    await rotate(base, fifo, 5);
    await reopen();
    await appendFile(base, lines(26, 4));
    await next(it, 22, got);
    await appendFile(base, lines(30, 1));
    ended.abort();
    await next(it, 1000, got);
    expect(got.map((l) => l.split(" ")[0]).join(",")).toEqual(texts(8, 23).map((l) => l.split(" ")[0]).join(","));
    expect((await it.next()).done).toBe(true);
  });

  it("given the end while a line is unfinished, then it is sent as it is and the stream ends", async () => {
    await writeFile(base, rec(0, "a"));
    const ended = new AbortController();
    const stream = readLogs(base, { follow: true, ended: ended.signal, pollMs: 50 });
    const it = stream[Symbol.asyncIterator]();
    const got = await next(it, 1, []);
    await appendFile(base, rec(1, "half", "stdout", "P"));
    ended.abort();
    expect(await next(it, 10, got)).toEqual(["a", "half"]);
  });

  it("given a client that goes away, when the stream is destroyed, then the follower stops and its files close", async () => {
    await writeFile(base, rec(0, "a"));
    const stream = readLogs(base, { follow: true, pollMs: 50 });
    const it = stream[Symbol.asyncIterator]();
    await next(it, 1, []);
    const fds = async () => (await readdir("/proc/self/fd")).length;
    const before = await fds();
    stream.destroy();
    await new Promise((r) => stream.once("close", r));
    expect(await fds()).toBeLessThan(before);
  });
});

describe("rotate", () => {
  it("given maxFiles, then ctr.log becomes .1, the others shift, and no more than maxFiles - 1 are kept", async () => {
    const fifo = join(dir, "ctl"); // no conmon, no fifo: nobody to ask for a reopen
    for (let i = 0; i < 7; i++) {
      await writeFile(base, `gen${i}\n`);
      expect(await rotate(base, fifo, 4)).toBe(false);
    }
    expect(await rotatedIndexes(base)).toEqual([1, 2, 3]);
    const sizes = await Promise.all([1, 2, 3].map(async (k) => (await stat(`${base}.${k}`)).size));
    expect(sizes).toEqual([5, 5, 5]);
    expect(await Promise.all([1, 2, 3].map((k) => readFile(`${base}.${k}`, "utf8")))).toEqual(["gen6\n", "gen5\n", "gen4\n"]);
  });
});
