// BENCH_SECTIONS=logs: serving a big container log, and how fast a follower sees a new line.
//
// The 1 GiB log is written straight into a running container's ctr.log in conmon's k8s-file
// format (~100-byte lines, 10.7 M of them): a container printing 1 GiB through conmon would take
// minutes and measure conmon, not the reader. The container gets a 2 GiB cap so that the file is
// one file, not rotated away. The follow latency is end to end with a real container: busybox
// prints a line every 50 ms, conmon stamps it when it reads it from the pipe, and the figure is
// the time from that stamp to the line's arrival over HTTP (same host clock).
import { open } from "node:fs/promises";
import { request } from "node:http";
import { readFileSync } from "node:fs";
import { cmd, pct, r1, removeAll, startBenchDaemon, stopBenchDaemon, type BenchDaemon } from "./proc.js";

const GiB = 1024 ** 3;
const rssKb = (pid: number, field = "VmRSS") => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);

/** GET a text route; the bytes received and ms to the end. `onChunk` sees the body as it comes. */
function getText(d: BenchDaemon, route: string, onChunk?: (b: Buffer) => void): Promise<{ bytes: number; ms: number; body: string }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(`${d.client.http.url}${route}`, { headers: { authorization: `Bearer ${d.client.http.token}` } }, (res) => {
      let bytes = 0;
      const keep: Buffer[] = [];
      res.on("data", (b: Buffer) => {
        bytes += b.length;
        if (onChunk) onChunk(b);
        else if (bytes < 1 << 20) keep.push(b);
      });
      res.on("end", () => resolve({ bytes, ms: performance.now() - t0, body: Buffer.concat(keep).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function writeBigLog(path: string, bytes: number): Promise<{ lines: number; ms: number; lastMs: number }> {
  const t0 = performance.now();
  const fh = await open(path, "a");
  const pad = "x".repeat(40);
  // ~100 bytes a line: about 10.7 M lines, 0.3 ms apart, the last one about now.
  const start = Date.now() - Math.round((bytes / 100) * 0.3);
  let lastMs = -1;
  let stamp = "";
  let written = 0;
  let n = 0;
  try {
    while (written < bytes) {
      const parts: string[] = [];
      let size = 0;
      while (size < 4 * 1024 * 1024) {
        // One line per 0.3 ms, ending about now: `since` has times to bisect.
        const ms = Math.floor(start + n * 0.3);
        if (ms !== lastMs) {
          lastMs = ms;
          stamp = new Date(ms).toISOString().replace("Z", "000000+00:00");
        }
        const l = `${stamp} stdout F line ${n} ${pad}\n`;
        parts.push(l);
        size += l.length;
        n++;
      }
      await fh.write(parts.join(""));
      written += size;
    }
  } finally {
    await fh.close();
  }
  return { lines: n, ms: performance.now() - t0, lastMs: Math.floor(start + (n - 1) * 0.3) };
}

export async function benchLogs(): Promise<Record<string, unknown>> {
  const d = await startBenchDaemon("logs");
  const pid = d.child.pid!;
  try {
    const big = (await cmd(d.nc, "container.run", { name: "biglog", image: "busybox:latest", cmd: ["sleep", "1000"], log: { maxSizeBytes: 2 * GiB } })).id as string;
    const w = await writeBigLog(`${d.dataRoot}/containers/${big}/ctr.log`, GiB);
    // Let the write's page cache settle and the daemon idle before measuring it.
    await new Promise((r) => setTimeout(r, 1500));

    const rss0 = rssKb(pid);
    const hwm0 = rssKb(pid, "VmHWM");
    const tails: number[] = [];
    let tailBody = "";
    for (let i = 0; i < 10; i++) {
      const r = await getText(d, `/v1/containers/biglog/logs?tail=100`);
      tails.push(r.ms);
      tailBody = r.body;
    }
    const tailLines = tailBody.split("\n").length - 1;
    // The last ~3,300 lines (one second of the file's times), found by bisection.
    const since = await getText(d, `/v1/containers/biglog/logs?since=${new Date(w.lastMs - 1000).toISOString()}`);
    const rssTail = rssKb(pid);

    // All of it, through the socket, with the daemon's RSS sampled while it streams.
    let peak = rssKb(pid);
    const sampler = setInterval(() => (peak = Math.max(peak, rssKb(pid))), 50);
    const all = await getText(d, `/v1/containers/biglog/logs`, () => undefined);
    clearInterval(sampler);
    const hwm1 = rssKb(pid, "VmHWM");

    // Follow latency, end to end through conmon.
    await cmd(d.nc, "container.run", { name: "ticker", image: "busybox:latest", cmd: ["sh", "-c", "i=0; while [ $i -lt 200 ]; do echo tick $i; i=$((i+1)); sleep 0.05; done"] });
    const lat: number[] = [];
    let rest = "";
    await getText(d, `/v1/containers/ticker/logs?follow=true&timestamps=true&tail=0`, (b) => {
      const now = performance.timeOrigin + performance.now();
      const parts = (rest + b.toString()).split("\n");
      rest = parts.pop()!;
      for (const l of parts) {
        const ts = l.slice(0, l.indexOf(" "));
        const frac = /\.(\d+)/.exec(ts)?.[1] ?? "0";
        const stamped = Date.parse(ts) + Number(`0.${frac.slice(3) || "0"}`);
        lat.push(now - stamped);
      }
    });
    return {
      method: "1 GiB of k8s-file lines appended to a running container's ctr.log (not printed through conmon); follow: a busybox container printing every 50 ms, conmon's stamp → line received",
      bigLog: { bytes: GiB, lines: w.lines, writeMs: Math.round(w.ms) },
      tail100: { medianMs: r1(pct(tails, 50)), p99Ms: r1(pct(tails, 99)), runs: tails.length, lines: tailLines },
      sinceLastSecond: { ms: r1(since.ms), lines: since.body.split("\n").length - 1 },
      fullRead: { bytes: all.bytes, ms: Math.round(all.ms), mbPerSec: Math.round(all.bytes / 1024 ** 2 / (all.ms / 1000)) },
      daemonRss: {
        beforeMB: r1(rss0 / 1024),
        afterTailsMB: r1(rssTail / 1024),
        peakWhileFullReadMB: r1(peak / 1024),
        growthTailMB: r1((rssTail - rss0) / 1024),
        growthFullReadMB: r1((peak - rss0) / 1024),
        hwmGrowthMB: r1((hwm1 - hwm0) / 1024),
        target: "≤ a few MB",
      },
      followLatency: { lines: lat.length, medianMs: r1(pct(lat, 50)), p99Ms: r1(pct(lat, 99)), maxMs: r1(Math.max(...lat)) },
    };
  } finally {
    await removeAll(d);
    await stopBenchDaemon(d);
  }
}
