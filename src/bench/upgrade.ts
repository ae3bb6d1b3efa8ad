// The upgrade figures (issue 8, "Benchmark"): an in-place upgrade's downtime (old process stopped
// → new process running) against a bare stop + start of the same container, and against what a
// user does today (stop + remove + create + start with the same volumes), interleaved in one run;
// the time a failed upgrade takes to be back on the old revision. Not a test: nothing passes or fails.
import { existsSync } from "node:fs";
import { cmd, get, pct, r1, removeAll, startBenchDaemon, stopBenchDaemon } from "./proc.js";

const IMAGES = { "busybox:v2": "/opt/berth/images/busybox-v2.oci.tar", "busybox:broken": "/opt/berth/images/busybox-broken.oci.tar" };

type Ev = { type: string; data: Record<string, unknown> };

const r2 = (x: number) => Math.round(x * 100) / 100;
const stats = (xs: number[]) => ({ medianMs: r1(pct(xs, 50)), p99Ms: r1(pct(xs, 99)) });

/** Exit (the exit file's time) of the last run before the last start, to that start: the downtime the log records. */
function downtime(events: Ev[]): number {
  const started = lastOf(events, "ContainerStarted")!;
  const exited = lastOf(events.slice(0, events.indexOf(started)), "ContainerExited")!;
  return Date.parse(started.data.startedAt as string) - Date.parse(exited.data.exitedAt as string);
}

const lastOf = (events: Ev[], type: string) => events.filter((e) => e.type === type).at(-1);

export async function benchUpgrade(): Promise<Record<string, unknown>> {
  if (!Object.values(IMAGES).every(existsSync)) return { skipped: "the demo images busybox:v2 and busybox:broken are missing (deploy/setup.sh builds them)" };
  const N = Number(process.env.BENCH_UPGRADE_RUNS ?? 10);
  const d = await startBenchDaemon("upgrade");
  try {
    for (const [name, path] of Object.entries(IMAGES)) await cmd(d.nc, "image.import", { source: `oci-archive:${path}`, name });
    // A process that ends at once on SIGTERM, so that neither side waits for a kill timeout.
    const spec = (name: string) => ({
      name, image: "busybox:latest", cmd: ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait $!"],
      mounts: [{ type: "volume", source: `${name}-data`, target: "/data" }],
    });
    const events = async (id: string) => (await get<{ events: Ev[] }>(d, `/v1/containers/${id}/events`)).events;
    const up = (await cmd(d.nc, "container.run", spec("bench-upgrade"))).id as string;
    const bare = (await cmd(d.nc, "container.run", spec("bench-bare"))).id as string;
    const r = { upgrade: [] as number[], upgradeDown: [] as number[], bare: [] as number[], bareDown: [] as number[], recreate: [] as number[], recreateDown: [] as number[], rollback: [] as number[] };
    let image = "busybox:latest";
    for (let i = 0; i < N; i++) {
      image = image === "busybox:latest" ? "busybox:v2" : "busybox:latest";
      let t0 = performance.now();
      await cmd(d.nc, "container.upgrade", { id: up, image, healthGateSec: 0 });
      r.upgrade.push(performance.now() - t0);
      r.upgradeDown.push(downtime(await events(up)));

      t0 = performance.now();
      await cmd(d.nc, "container.stop", { id: bare });
      await cmd(d.nc, "container.start", { id: bare });
      r.bare.push(performance.now() - t0);
      r.bareDown.push(downtime(await events(bare)));

      // Today's way: a new container (new id; the IP is whatever comes next) on the same volume.
      const name = `bench-recreate-${i}`;
      const old = (await cmd(d.nc, "container.run", spec(name))).id as string;
      t0 = performance.now();
      await cmd(d.nc, "container.stop", { id: old });
      const exitedAt = lastOf(await events(old), "ContainerExited")!.data.exitedAt as string;
      await cmd(d.nc, "container.remove", { id: old });
      const fresh = (await cmd(d.nc, "container.run", { ...spec(`${name}-b`), image: "busybox:v2", mounts: spec(name).mounts })).id as string;
      r.recreate.push(performance.now() - t0);
      const startedAt = lastOf(await events(fresh), "ContainerStarted")!.data.startedAt as string;
      r.recreateDown.push(Date.parse(startedAt) - Date.parse(exitedAt));
      await cmd(d.nc, "container.remove", { id: fresh, force: true });
    }
    // A failed upgrade: the broken image's start fails and the old revision runs again.
    for (let i = 0; i < Math.max(3, Math.floor(N / 2)); i++) {
      const t0 = performance.now();
      await cmd(d.nc, "container.upgrade", { id: up, image: "busybox:broken", healthGateSec: 0 }).catch(() => undefined);
      r.rollback.push(performance.now() - t0);
    }
    const c = await get<{ state: string; image: string }>(d, `/v1/containers/${up}`);
    const upgrade = stats(r.upgrade);
    const bareStats = stats(r.bare);
    return {
      runs: N,
      note: "upgrade: container.upgrade with healthGateSec 0 (stop, switch the rw layer, start in the kept netns); bare: container.stop + container.start of the same container; recreate: stop + remove + run of a new container on the same named volume (a new id and IP). Downtime from the log: the old run's exit (exit file time) to the new run's start.",
      upgrade: { ...upgrade, downtime: stats(r.upgradeDown) },
      bareStopStart: { ...bareStats, downtime: stats(r.bareDown) },
      recreate: { ...stats(r.recreate), downtime: stats(r.recreateDown) },
      upgradeVsBare: r2(upgrade.medianMs / bareStats.medianMs),
      upgradeDowntimeVsBare: r2(pct(r.upgradeDown, 50) / pct(r.bareDown, 50)),
      upgradeVsRecreate: r2(upgrade.medianMs / stats(r.recreate).medianMs),
      target: "upgrade ≤ 1.2 × bare stop + start",
      failedUpgradeRolledBack: { ...stats(r.rollback), endsOn: `${c.image} ${c.state}` },
    };
  } finally {
    await removeAll(d).catch(() => undefined);
    await stopBenchDaemon(d);
  }
}
