// Container logs on the real stack: busybox containers under conmon print, the daemon's HTTP API
// serves their k8s-file logs (tail, since, timestamps, follow), rotates them at a small cap while
// they print, and removes every log file with the container.
import { mkdtemp, readdir, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { until } from "../support/proc.js";
import { BIN, BUILT } from "../support/daemon-proc.js";
import { IN_CI } from "../support/prereq.js";
import { execa } from "execa";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const RFC3339NANO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d)$/;

describe.skipIf(skip)("container logs", () => {
  let d: TestDaemon;
  let trig: string;
  beforeAll(async () => {
    d = await startTestDaemon();
    trig = await mkdtemp(join(tmpdir(), "berth-logs-trig-"));
  });
  afterAll(async () => {
    await d?.destroy();
    if (trig) await rm(trig, { recursive: true, force: true });
  });

  const run = async (name: string, script: string, extra: Record<string, unknown> = {}) => {
    const r = await d.cmd<{ id: string }>("container.run", { name, image: "busybox:latest", cmd: ["sh", "-c", script], ...extra });
    expect(r.error).toBeUndefined();
    return r.result!.id;
  };
  const state = async (ref: string) => (await d.get<{ state: string }>(`/v1/containers/${ref}`)).state;
  const exited = (ref: string, ms = 30_000) => until(async () => (await state(ref)) === "exited", ms);
  const text = async (path: string) => {
    const r = await d.http(path);
    expect(r.status, await r.clone().text()).toBe(200);
    return r.text();
  };
  const lines = async (path: string) => (await text(path)).split("\n").slice(0, -1);
  const logDir = (id: string) => join(d.dataRoot, "containers", id);
  const logFiles = async (id: string) => (await readdir(logDir(id)).catch(() => [] as string[])).filter((f) => /^ctr\.log(\.\d+)?$/.test(f));

  /** A follow request, read as it arrives: lines so far, and when the answer ended. */
  function follow(path: string) {
    const got: string[] = [];
    let rest = "";
    let ended = false;
    const ac = new AbortController();
    const done = (async () => {
      const r = await d.http(path, { signal: ac.signal });
      expect(r.status).toBe(200);
      const dec = new TextDecoder();
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        const parts = (rest + dec.decode(chunk, { stream: true })).split("\n");
        rest = parts.pop()!;
        got.push(...parts);
      }
      ended = true;
    })();
    done.catch(() => undefined);
    return { got, done, ac, isEnded: () => ended };
  }

  it("given a container that printed many lines, then tail gives the last ones, timestamps their times", async () => {
    const id = await run("many", "i=0; while [ $i -lt 20000 ]; do echo \"line $i\"; i=$((i+1)); done");
    await exited("many");
    expect(await lines("/v1/containers/many/logs?tail=3")).toEqual(["line 19997", "line 19998", "line 19999"]);
    expect(await lines("/v1/containers/many/logs?tail=0")).toEqual([]);
    const all = await lines(`/v1/containers/${id.slice(0, 12)}/logs?tail=all`);
    expect(all.length).toBe(20000);
    expect(all[0]).toBe("line 0");
    expect(await lines("/v1/containers/many/logs")).toEqual(all);
    const stamped = await lines("/v1/containers/many/logs?tail=2&timestamps=true");
    expect(stamped.map((l) => l.slice(l.indexOf(" ") + 1))).toEqual(["line 19998", "line 19999"]);
    for (const l of stamped) expect(l.slice(0, l.indexOf(" "))).toMatch(RFC3339NANO);
  });

  it("given since, then only the lines from that time on", async () => {
    await run("since", "echo early; sleep 2; echo late; sleep 1000");
    const [early, late] = await until(async () => {
      const ls = await lines("/v1/containers/since/logs?timestamps=true");
      return ls.length === 2 && ls;
    });
    const t = (l: string) => Date.parse(l.slice(0, l.indexOf(" ")));
    expect(t(late) - t(early)).toBeGreaterThan(1500);
    const mid = new Date((t(early) + t(late)) / 2).toISOString();
    expect(await lines(`/v1/containers/since/logs?since=${mid}`)).toEqual(["late"]);
    expect(await lines(`/v1/containers/since/logs?since=1h`)).toEqual(["early", "late"]);
    expect(await lines(`/v1/containers/since/logs?since=${Math.floor(t(early) / 1000) - 1}`)).toEqual(["early", "late"]);
    expect(await lines(`/v1/containers/since/logs?since=${mid}&tail=5`)).toEqual(["late"]);
    await d.cmd("container.remove", { id: "since", force: true });
  });

  it("given follow, then a line written after the request arrives, and the answer ends when the container exits", async () => {
    await run("fol", "echo first; while [ ! -e /trig/go ]; do sleep 0.05; done; echo second; while [ ! -e /trig/stop ]; do sleep 0.05; done; echo bye", {
      mounts: [{ type: "bind", source: trig, target: "/trig" }],
    });
    const f = follow("/v1/containers/fol/logs?follow=true");
    await until(async () => f.got.includes("first"));
    await writeFile(join(trig, "go"), "");
    await until(async () => f.got.includes("second"));
    expect(f.isEnded()).toBe(false);
    expect(await state("fol")).toBe("running");
    await writeFile(join(trig, "stop"), "");
    await f.done;
    expect(f.got).toEqual(["first", "second", "bye"]);
    expect(await state("fol")).toBe("exited");
    // A finished container: follow gives what is there and ends at once.
    const again = follow("/v1/containers/fol/logs?follow=true&tail=1");
    await again.done;
    expect(again.got).toEqual(["bye"]);
  });

  it("given a follower that goes away, then the daemon stops reading for it and closes the log", async () => {
    const id = await run("gone", "while true; do echo tick; sleep 0.1; done");
    // The daemon runs in this process: its follower's descriptors on the log are ours to see.
    const openLogs = async () => {
      const targets = await Promise.all((await readdir("/proc/self/fd")).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
      return targets.filter((t) => t.startsWith(join(logDir(id), "ctr.log"))).length;
    };
    const f = follow("/v1/containers/gone/logs?follow=true");
    await until(async () => f.got.length > 2);
    expect(await openLogs()).toBe(1);
    f.ac.abort();
    await until(async () => (await openLogs()) === 0, 5_000);
    await d.cmd("container.remove", { id: "gone", force: true });
  });

  it("given a 64 KiB cap, when the container prints, then at most maxFiles files of about the cap, and follow reads through the rotations", async () => {
    const cap = 64 * 1024;
    const N = 4000;
    // ≈ 140 bytes a record, 50 records every 0.1 s: ≈ 70 KB/s, a rotation every second or so;
    // 560 KB in all, more than 3 files can hold.
    const script = `pad=$(printf '%0100d' 0); i=0; while [ $i -lt ${N} ]; do echo "$i $pad"; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.1; done; sleep 0.5`;
    const id = await run("rot", script, { log: { maxSizeBytes: cap, maxFiles: 3 } });
    const f = follow("/v1/containers/rot/logs?follow=true");
    let maxCount = 0;
    let maxSize = 0;
    let sawRotated = false;
    while ((await state("rot")) === "running") {
      const files = await logFiles(id);
      maxCount = Math.max(maxCount, files.length);
      sawRotated ||= files.includes("ctr.log.2");
      for (const file of files) maxSize = Math.max(maxSize, (await stat(join(logDir(id), file)).catch(() => ({ size: 0 }))).size);
      await sleep(100);
    }
    await f.done;
    expect(sawRotated).toBe(true);
    expect(maxCount).toBeLessThanOrEqual(3);
    // The poll runs every second: a file passes the cap by what was written meanwhile.
    expect(maxSize).toBeLessThan(cap + 200 * 1024);
    // Nothing lost, nothing twice: the follower saw every line in order across the rotations.
    const nums = (ls: string[]) => ls.map((l) => Number(l.split(" ")[0]));
    expect(nums(f.got)).toEqual(Array.from({ length: N }, (_, i) => i));
    // What is kept is the newest lines, in order, without a gap.
    const kept = nums(await lines("/v1/containers/rot/logs"));
    expect(kept.at(-1)).toBe(N - 1);
    expect(kept[0]).toBeGreaterThan(0);
    expect(kept).toEqual(Array.from({ length: kept.length }, (_, i) => kept[0] + i));
    expect(nums(await lines("/v1/containers/rot/logs?tail=700"))).toEqual(Array.from({ length: 700 }, (_, i) => N - 700 + i));

    const rm = await d.cmd("container.remove", { id: "rot" });
    expect(rm.error).toBeUndefined();
    expect(await logFiles(id)).toEqual([]);
    await expect(stat(logDir(id))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("given bad input, then 400 InvalidArgument (404 for no such container) and nothing changes", async () => {
    const id = await run("bad", "echo one; echo two");
    await exited("bad");
    const filesBefore = await logFiles(id);
    const sizeBefore = (await stat(join(logDir(id), "ctr.log"))).size;
    const eventsBefore = (await d.get<{ events: unknown[] }>("/v1/events?limit=10000")).events.length;
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const cases: [string, RegExp][] = [
      ["tail=-1", /tail '-1' must be a whole number of lines from 0 to 1000000, or 'all'/],
      ["tail=1000001", /from 0 to 1000000/],
      ["tail=99999999999999", /from 0 to 1000000/],
      ["tail=abc", /tail 'abc'/],
      [`since=${future}`, /in the future/],
      ["since=4000000000", /in the future/],
      ["since=yesterday", /since 'yesterday' is not a time/],
      ["since=-10m", /is not a time/],
      ["follow=maybe", /follow/],
      ["timestamps=2", /timestamps/],
      ["lines=5", /must NOT have additional properties 'lines'/],
    ];
    for (const [q, message] of cases) {
      const r = await d.http(`/v1/containers/bad/logs?${q}`);
      expect(r.status, q).toBe(400);
      const body = (await r.json()) as { error: { code: string; message: string } };
      expect(body.error.code, q).toBe("InvalidArgument");
      expect(body.error.message, q).toMatch(message);
    }
    expect((await d.http("/v1/containers/nosuch/logs?tail=1")).status).toBe(404);
    expect((await d.http("/v1/containers/bad/logs?tail=1", { token: "wrong" })).status).toBe(401);
    expect(await logFiles(id)).toEqual(filesBefore);
    expect((await stat(join(logDir(id), "ctr.log"))).size).toBe(sizeBefore);
    expect((await d.get<{ events: unknown[] }>("/v1/events?limit=10000")).events.length).toBe(eventsBefore);
    expect(await lines("/v1/containers/bad/logs")).toEqual(["one", "two"]);
  });

  it("given a log cap out of bounds in the spec, then the create is refused and no container exists", async () => {
    const before = (await d.get<{ containers: unknown[] }>("/v1/containers?all=true")).containers.length;
    for (const log of [{ maxSizeBytes: 100 }, { maxFiles: 0 }, { maxFiles: 101 }, { maxSizeBytes: 2 ** 41 }, { rotate: true }]) {
      const r = await d.cmd("container.create", { name: "badlog", image: "busybox:latest", log });
      expect(r.error?.code, JSON.stringify(log)).toBe("InvalidArgument");
    }
    expect((await d.get<{ containers: unknown[] }>("/v1/containers?all=true")).containers.length).toBe(before);
  });

  it.skipIf(!BUILT)("given berth logs -f --since 10m -t --tail 1, then lines reach stdout as they come and the CLI exits with the container", async () => {
    await run("clif", "echo one; echo two; while [ ! -e /trig/cli-go ]; do sleep 0.05; done; echo three; sleep 0.3", {
      mounts: [{ type: "bind", source: trig, target: "/trig" }],
    });
    await until(async () => (await lines("/v1/containers/clif/logs")).length === 2);
    const p = execa(BIN, ["--data-root", d.dataRoot, "logs", "-f", "--since", "10m", "-t", "--tail", "1", "clif"], { reject: false });
    let out = "";
    p.stdout!.on("data", (b: Buffer) => (out += b.toString()));
    await until(async () => out.includes(" two\n"));
    expect(out).not.toContain("one");
    await writeFile(join(trig, "cli-go"), "");
    const r = await p;
    expect(r.exitCode).toBe(0);
    const got = out.split("\n").slice(0, -1);
    expect(got.map((l) => l.slice(l.indexOf(" ") + 1))).toEqual(["two", "three"]);
    for (const l of got) expect(l.slice(0, l.indexOf(" "))).toMatch(RFC3339NANO);

    const bad = await execa(BIN, ["--data-root", d.dataRoot, "logs", "--since", "2999-01-01T00:00:00Z", "clif"], { reject: false });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/^berth: InvalidArgument: since '2999-01-01T00:00:00Z' is in the future/);
    expect((await execa(BIN, ["--data-root", d.dataRoot, "logs", "--tail", "-1", "clif"], { reject: false })).exitCode).toBe(2);
    const json = await execa(BIN, ["--data-root", d.dataRoot, "logs", "--json", "clif"], { reject: false });
    expect(JSON.parse(json.stdout)).toEqual({ lines: ["one", "two", "three"] });
  });
});
