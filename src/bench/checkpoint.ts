// The checkpoint figures (issue 9, "Benchmark"): container.checkpoint and container.restore of a
// small container and of one holding 256 MB of touched memory, against raw `runc checkpoint` /
// a restore through conmon (as berth does it, by hand) of a container of the same kind in the same run; the archive's upload in MB/s
// against a raw object-store put of the same bytes. Not a test: nothing passes or fails.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { connect } from "@nats-io/transport-node";
import { Objm, setSha256Backend } from "@nats-io/obj";
import { execa } from "execa";
import { CRIU_ENV, CRIU_PATH, readDumpStats, startLazyPages } from "../runtime/criu.js";
import { DAEMON_INBOX_PREFIX } from "../runtime/nats-roles.js";
import { cmd, pct, r1, removeAll, sleep, startBenchDaemon, stopBenchDaemon, type BenchDaemon } from "./proc.js";

const r2 = (x: number) => Math.round(x * 100) / 100;
const median = (xs: number[]) => r1(pct(xs, 50));

export const SMALL = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"];
// busybox awk makes a 256 MiB string at once, and touches every page of it.
export const BIG = ["awk", "BEGIN { s = sprintf(\"%268435456s\", \"\"); while (1) system(\"sleep 1\") }"];

/** `node`: on that node of a cluster (else the daemon's that takes the command). */
export async function runWarm(d: BenchDaemon, name: string, argv: string[], node?: string): Promise<string> {
  const id = (await cmd(d.nc, "container.run", { name, image: "busybox:latest", cmd: argv, network: { mode: "none" }, ...(node ? { node } : {}) })).id as string;
  // Let the big one fill its memory.
  await sleep(argv === BIG ? 4000 : 500);
  return id;
}

/**
 * Raw: `runc checkpoint` of a berth container, then `runc restore --detach` from the same bundle.
 * `transfer`: the image dir is copied (`cp -a`) to another dir between the two and restored from
 * there, standing in for a migration's transfer (copyMs).
 */
export async function rawRound(d: BenchDaemon, id: string, work: string, o: { transfer?: boolean; lazy?: boolean } = {}): Promise<{ dumpMs: number; frozenMs: number; copyMs: number; restoreMs: number }> {
  const root = join(d.dataRoot, "runc");
  let img = join(work, `img-${randomBytes(3).toString("hex")}`);
  await mkdir(img, { recursive: true });
  const bundle = join(d.dataRoot, "containers", id);
  const t0 = performance.now();
  await execa("runc", ["--root", root, `--criu=${CRIU_PATH}`, "checkpoint", "--image-path", img, "--work-path", img, id], { env: CRIU_ENV });
  const dumpMs = performance.now() - t0;
  const stats = await readDumpStats(img);
  let copyMs = 0;
  if (o.transfer) {
    const moved = `${img}-moved`;
    const t = performance.now();
    await execa("cp", ["-a", img, moved]);
    copyMs = performance.now() - t;
    await rm(img, { recursive: true, force: true });
    img = moved;
  }
  // The restore as berth makes it, by hand: conmon --restore (runc restore under it, new stdio pipes).
  const socks = `/tmp/bb-${randomBytes(3).toString("hex")}`;
  await mkdir(join(img, "exits"), { recursive: true });
  await mkdir(socks, { recursive: true });
  const t1 = performance.now();
  // `lazy`: CRIU's lazy-pages daemon serves the memory, as berth's restore of a big dump does.
  if (o.lazy) await mkdir(join(img, "rwork"), { recursive: true });
  const lazy = o.lazy ? startLazyPages(img, join(img, "rwork")) : null;
  await lazy?.ready;
  await execa("conmon", [
    "--api-version", "1", "-c", id, "-u", id, "-n", id, "-r", "/usr/sbin/runc", "-b", bundle,
    "-p", join(img, "pid"), "--conmon-pidfile", join(img, "conmon.pid"), "--exit-dir", join(img, "exits"),
    "--socket-dir-path", socks, "-l", `k8s-file:${join(img, "ctr.log")}`,
    "--runtime-arg", `--root=${root}`, "--runtime-arg", `--criu=${CRIU_PATH}`,
    "--restore", img, "--runtime-opt", `--work-path=${join(img, "rwork")}`, ...(lazy ? ["--runtime-opt", "--lazy-pages"] : []),
  ], { env: { PATH: process.env.PATH ?? "", ...CRIU_ENV } });
  while (!existsSync(join(img, "pid"))) await sleep(2);
  const restoreMs = performance.now() - t1;
  await lazy?.done;
  await execa("runc", ["--root", root, "kill", id, "KILL"]).catch(() => undefined);
  for (let i = 0; i < 250 && !existsSync(join(img, "exits", id)); i++) await sleep(20);
  await execa("runc", ["--root", root, "delete", "--force", id]).catch(() => undefined);
  await rm(img, { recursive: true, force: true });
  await rm(socks, { recursive: true, force: true });
  return { dumpMs, frozenMs: stats?.frozenMs ?? 0, copyMs, restoreMs };
}

export async function benchCheckpoint(): Promise<Record<string, unknown>> {
  if (!existsSync(CRIU_PATH)) return { skipped: `${CRIU_PATH} is missing (deploy/setup.sh installs it)` };
  const N = Number(process.env.BENCH_CHECKPOINT_RUNS ?? 5);
  const d = await startBenchDaemon("checkpoint");
  const work = join(d.dataRoot, "raw-checkpoints");
  const out: Record<string, unknown> = { runs: N };
  try {
    for (const [label, argv] of [["small", SMALL], ["touched256MB", BIG]] as const) {
      const b = { total: [] as number[], dump: [] as number[], frozen: [] as number[], upload: [] as number[], size: [] as number[], restore: [] as number[] };
      const raw = { dump: [] as number[], frozen: [] as number[], restore: [] as number[] };
      const runs = label === "small" ? N : Math.max(2, Math.floor(N / 2));
      for (let i = 0; i < runs; i++) {
        // berth and raw alternately, each on a fresh container of the same kind.
        const id = await runWarm(d, `cp-${label}-${i}`, argv);
        let t0 = performance.now();
        const cp = await cmd(d.nc, "container.checkpoint", { id });
        b.total.push(performance.now() - t0);
        b.dump.push(cp.dumpMs as number);
        b.frozen.push(cp.frozenMs as number);
        b.upload.push(cp.uploadMs as number);
        b.size.push(cp.sizeBytes as number);
        t0 = performance.now();
        await cmd(d.nc, "container.restore", { checkpointId: cp.checkpointId });
        b.restore.push(performance.now() - t0);
        await cmd(d.nc, "container.remove", { id, force: true });

        const rid = await runWarm(d, `raw-${label}-${i}`, argv);
        const r = await rawRound(d, rid, work);
        raw.dump.push(r.dumpMs);
        raw.frozen.push(r.frozenMs);
        raw.restore.push(r.restoreMs);
        await cmd(d.nc, "container.remove", { id: rid, force: true });
      }
      const sizeMB = pct(b.size, 50) / 1e6;
      out[label] = {
        runs,
        berth: { checkpointMs: median(b.total), criuDumpMs: median(b.dump), frozenMs: median(b.frozen), uploadMs: median(b.upload), archiveMB: r2(sizeMB), restoreMs: median(b.restore) },
        raw: { runcCheckpointMs: median(raw.dump), frozenMs: median(raw.frozen), conmonRestoreMs: median(raw.restore) },
        criuDumpVsRaw: r2(pct(b.dump, 50) / pct(raw.dump, 50)),
        restoreVsRaw: r2(pct(b.restore, 50) / pct(raw.restore, 50)),
        uploadMBps: r2(sizeMB / (pct(b.upload, 50) / 1000)),
      };
    }
    // The object store on its own: a put of as many bytes as the big archive, from memory.
    const secrets = JSON.parse(readFileSync(join(d.dataRoot, "secrets.json"), "utf8")) as { natsUser: string; natsPass: string };
    const nc = await connect({ servers: d.client.nats.servers, user: secrets.natsUser, pass: secrets.natsPass, inboxPrefix: DAEMON_INBOX_PREFIX });
    try {
      setSha256Backend("native");
      const os = await new Objm(nc).create("berth_checkpoints");
      const bytes = Math.round(((out.touched256MB as { berth: { archiveMB: number } }).berth.archiveMB) * 1e6);
      const buf = Buffer.alloc(bytes, 7);
      const t0 = performance.now();
      await os.put({ name: `raw-bench-${randomBytes(4).toString("hex")}` }, Readable.toWeb(Readable.from([buf], { objectMode: false })) as unknown as ReadableStream<Uint8Array>);
      const ms = performance.now() - t0;
      out.rawObjectPut = { MB: r2(bytes / 1e6), ms: r1(ms), MBps: r2(bytes / 1e6 / (ms / 1000)) };
    } finally {
      await nc.close();
    }
    out.note = "berth: container.checkpoint (criuDumpMs: runc checkpoint + the rw layer's tar; uploadMs: the archive into the object store) and container.restore (fetch, unpack, verify, conmon --restore); raw: runc checkpoint, and conmon --restore (runc restore under conmon, by hand) of a container of the same kind, with the same CRIU wrapper. Target: criuDumpVsRaw ≤ 1.2.";
    return out;
  } finally {
    await rm(work, { recursive: true, force: true });
    await removeAll(d).catch(() => undefined);
    await stopBenchDaemon(d);
  }
}
