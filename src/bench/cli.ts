// `BENCH_SECTIONS=cli`: the CLI as a shell runs it. Wall time and peak RSS of `berth ps` and of
// the cycle `berth run -d … && berth rm -f …`, against Node's own start-up (`node -e ''`, and two
// of them for the cycle) and podman's same commands when podman is on PATH, all in the same run,
// round by round interleaved so that a busy machine weighs on each alike.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { cmd as natsCmd, pct, r1, removeAll, startBenchDaemon, stopBenchDaemon } from "./proc.js";

const BIN = resolve(dirname(fileURLToPath(import.meta.url)), "../../bin/berth");
const SEED = process.env.BERTH_SEED_IMAGE ?? "/opt/berth/images/busybox-latest.oci.tar";
const TIME = "/usr/bin/time";

const onPath = (bin: string) => spawnSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" }).status === 0;

/** Wall ms of one run (no wrapper in between), and a failure as an error with its stderr. */
function wall(argv: string[]): number {
  const t0 = performance.now();
  const p = spawnSync(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
  const ms = performance.now() - t0;
  if (p.status !== 0) throw new Error(`bench cli: ${argv.join(" ")}: exit ${p.status}: ${p.stderr}`);
  return ms;
}

/** Peak RSS (MB) of one run, by GNU time in a run of its own; null without /usr/bin/time. */
function peakRss(argv: string[], dir: string): number | null {
  if (!existsSync(TIME)) return null;
  const out = join(dir, "rss");
  const p = spawnSync(TIME, ["-f", "%M", "-o", out, ...argv], { stdio: "ignore" });
  if (p.status !== 0) throw new Error(`bench cli: ${argv.join(" ")}: exit ${p.status}`);
  return Number(readFileSync(out, "utf8").trim().split("\n").pop()) / 1024;
}

interface Series {
  wall: number[];
  rss: number[];
}
const series = (): Series => ({ wall: [], rss: [] });
const sum = (s: Series) => ({
  medianMs: r1(pct(s.wall, 50)),
  p90Ms: r1(pct(s.wall, 90)),
  peakRssMB: s.rss.length ? r1(pct(s.rss, 50)) : null,
});

export async function benchCli(): Promise<Record<string, unknown>> {
  const N = Number(process.env.BENCH_CLI_RUNS ?? 30);
  const d = await startBenchDaemon("cli");
  const dir = mkdtempSync(join(tmpdir(), "berth-bench-cli-"));
  const podman = onPath("podman");
  let podmanLoaded = false;
  const podmanNames: string[] = [];
  const tag = randomBytes(3).toString("hex");
  try {
    const berth = (...a: string[]) => [BIN, "--data-root", d.dataRoot, ...a];
    const floor = ["node", "-e", ""];
    // The same for both: no network (berth's default is the bridge now), no rlimits raised (this
    // machine refuses podman's default of raising them), and rm -f kills at once (-t 0).
    const podmanRun = (name: string) => ["podman", "run", "-d", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--name", name, "busybox:latest", "sleep", "100"];
    const podmanRm = (name: string) => ["podman", "rm", "-f", "-t", "0", name];
    if (podman && spawnSync("podman", ["image", "exists", "busybox:latest"]).status !== 0) {
      // The same image berth runs, from the same archive: no registry, no network.
      const p = spawnSync("podman", ["load", "-i", SEED], { stdio: ["ignore", "ignore", "pipe"] });
      if (p.status !== 0) throw new Error(`bench cli: podman load: ${p.stderr}`);
      podmanLoaded = true;
    }

    const s = { floor: series(), ps: series(), podmanPs: series(), floor2: series(), cycle: series(), podmanCycle: series(), api: series() };
    // One warm-up of each: the first run of anything pays for the page cache.
    wall(floor);
    wall(berth("ps"));
    if (podman) wall(["podman", "ps"]);
    for (let i = 0; i < N; i++) {
      s.floor.wall.push(wall(floor));
      s.ps.wall.push(wall(berth("ps")));
      if (podman) s.podmanPs.wall.push(wall(["podman", "ps"]));
      // The shell cycle as a user types it: two processes, one after the other.
      const name = `bcli${tag}${i}`;
      const cmd = (argv: string[]) => argv.map((a) => `'${a}'`).join(" ");
      s.floor2.wall.push(wall(["sh", "-c", `${cmd(floor)} && ${cmd(floor)}`]));
      s.cycle.wall.push(wall(["sh", "-c", `${cmd(berth("run", "-d", "--network", "none", "--name", name, "busybox:latest", "sleep", "100"))} && ${cmd(berth("rm", "-f", name))}`]));
      if (podman) {
        podmanNames.push(name);
        s.podmanCycle.wall.push(wall(["sh", "-c", `${cmd(podmanRun(name))} >/dev/null && ${cmd(podmanRm(name))}`]));
      }
      // The same cycle through the API from a connected client: what the daemon itself takes.
      const t0 = performance.now();
      // The same work as the shell cycle's (network none), so that the difference is the CLI's.
      const r = await natsCmd(d.nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "100"], network: { mode: "none" } });
      await natsCmd(d.nc, "container.remove", { id: r.id, force: true });
      s.api.wall.push(performance.now() - t0);
      // Peak memory in runs of their own: GNU time in between would add its own start-up to wall.
      if (i < Math.min(N, 10)) {
        const r = (argv: string[]) => peakRss(argv, dir);
        const push = (x: Series, v: number | null) => v !== null && x.rss.push(v);
        push(s.floor, r(floor));
        push(s.ps, r(berth("ps")));
        if (podman) push(s.podmanPs, r(["podman", "ps"]));
        const rn = `${name}m`;
        push(s.cycle, Math.max(r(berth("run", "-d", "--network", "none", "--name", rn, "busybox:latest", "sleep", "100")) ?? 0, r(berth("rm", "-f", rn)) ?? 0) || null);
        if (podman) {
          podmanNames.push(rn);
          push(s.podmanCycle, Math.max(r(podmanRun(rn)) ?? 0, r(podmanRm(rn)) ?? 0) || null);
        }
      }
    }
    const ratio = (a: Series, b: Series) => Math.round((pct(a.wall, 50) / pct(b.wall, 50)) * 100) / 100;
    return {
      rounds: N,
      loadAverage1m: r1(loadavg()[0]),
      nodeFloor: { command: "node -e ''", ...sum(s.floor) },
      ps: { ...sum(s.ps), xNodeFloor: ratio(s.ps, s.floor), target: "≤ 1.3× node -e ''" },
      podmanPs: podman ? sum(s.podmanPs) : "podman not on PATH",
      cycleNodeFloor: { command: "node -e '' && node -e ''", ...sum(s.floor2) },
      cycle: {
        command: "berth run -d --network none --name X busybox:latest sleep 100 && berth rm -f X",
        ...sum(s.cycle),
        note: "peakRssMB: the larger of run and rm",
        xNodeFloor: ratio(s.cycle, s.floor2),
        ...(podman ? { xPodman: ratio(s.cycle, s.podmanCycle) } : {}),
        target: "faster than podman's same cycle",
      },
      // What the shell cycle costs beyond the daemon's own work and Node's start-ups.
      apiCycle: { command: "container.run {network none} + container.remove {force} over NATS, one connected client", medianMs: r1(pct(s.api.wall, 50)), p90Ms: r1(pct(s.api.wall, 90)) },
      cliOwnPerCommandMs: r1((pct(s.cycle.wall, 50) - pct(s.floor2.wall, 50) - pct(s.api.wall, 50)) / 2),
      podmanCycle: podman
        ? { command: "podman run -d --network none --ulimit … --name X busybox:latest sleep 100 && podman rm -f -t 0 X", ...sum(s.podmanCycle) }
        : "podman not on PATH",
    };
  } finally {
    for (const n of podmanNames) spawnSync("podman", ["rm", "-f", "-t", "0", "--ignore", n], { stdio: "ignore" });
    if (podmanLoaded) spawnSync("podman", ["rmi", "busybox:latest"], { stdio: "ignore" });
    rmSync(dir, { recursive: true, force: true });
    await removeAll(d);
    await stopBenchDaemon(d);
  }
}
