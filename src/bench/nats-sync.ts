// What fsync-on-every-write costs (issue 3, "NATS outages": choose the embedded nats-server's
// `sync_interval` after measuring it). Two daemon processes side by side, one with
// `--nats-sync always`, one with `2m` (nats-server's own default), and the bench's two
// command-path figures, create throughput from 8 clients and the run+remove cycle, taken in
// alternating blocks (A B, B A, …) so that whatever else the host does falls on both alike.
// Removes every container it made, stops both daemons and checks that nothing is left behind.
import { connect } from "@nats-io/transport-node";
import { cmd, pct, pool, r1, removeAll, startBenchDaemon, stopBenchDaemon, type BenchDaemon } from "./proc.js";

const MODES = ["always", "2m"] as const;

export async function benchNatsSync(): Promise<Record<string, unknown>> {
  const CREATES = Number(process.env.BENCH_CREATES ?? 2000);
  const CYCLES = Number(process.env.BENCH_RUNS ?? 50);
  const ROUNDS = Number(process.env.BENCH_SYNC_ROUNDS ?? 5);
  const CLIENTS = 8;
  const perClient = Math.max(1, Math.round(CREATES / ROUNDS / CLIENTS));
  const cyclesPerRound = Math.max(1, Math.round(CYCLES / ROUNDS));
  const daemons: BenchDaemon[] = [];
  const out: Record<string, unknown> = {};
  let failure: unknown = null;
  try {
    for (const m of MODES) daemons.push(await startBenchDaemon(`sync${m}`, ["--nats-sync", m]));
    const conns = await Promise.all(
      daemons.map((d) =>
        Promise.all(Array.from({ length: CLIENTS }, () => connect({ servers: d.client.nats.servers, user: d.client.nats.user, pass: d.client.nats.pass }))),
      ),
    );
    const stats = MODES.map(() => ({ createLat: [] as number[], createSecs: 0, creates: 0, perRound: [] as number[], cycle: [] as number[], ids: [] as string[] }));
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 ? [1, 0] : [0, 1];
      for (const i of order) {
        const s = stats[i];
        const t0 = performance.now();
        await Promise.all(
          conns[i].map(async (nc) => {
            for (let k = 0; k < perClient; k++) {
              const t = performance.now();
              const r = await cmd(nc, "container.create", { image: "busybox:latest", cmd: ["true"] });
              s.createLat.push(performance.now() - t);
              s.ids.push(r.id as string);
            }
          }),
        );
        const secs = (performance.now() - t0) / 1000;
        s.createSecs += secs;
        s.creates += perClient * CLIENTS;
        s.perRound.push(Math.round((perClient * CLIENTS) / secs));
        for (let k = 0; k < cyclesPerRound; k++) {
          const t = performance.now();
          const r = await cmd(daemons[i].nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "1000"] });
          await cmd(daemons[i].nc, "container.remove", { id: r.id, force: true });
          s.cycle.push(performance.now() - t);
        }
      }
    }
    for (const c of conns.flat()) await c.close();
    const result = MODES.map((m, i) => {
      const s = stats[i];
      return {
        natsSync: daemons[i].natsSync,
        create: { creates: s.creates, clients: CLIENTS, perSec: Math.round(s.creates / s.createSecs), p50Ms: r1(pct(s.createLat, 50)), p99Ms: r1(pct(s.createLat, 99)), perRoundPerSec: s.perRound },
        runRemoveCycle: { runs: s.cycle.length, medianMs: r1(pct(s.cycle, 50)), p99Ms: r1(pct(s.cycle, 99)) },
      };
    });
    const [always, interval] = result;
    out.rounds = ROUNDS;
    out.always = always;
    out.interval2m = interval;
    const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;
    out.alwaysVs2m = {
      createPerSec: ratio(always.create.perSec, interval.create.perSec),
      createP99: ratio(always.create.p99Ms, interval.create.p99Ms),
      cycleMedian: ratio(always.runRemoveCycle.medianMs, interval.runRemoveCycle.medianMs),
    };
    out.alwaysMeetsTarget = always.create.perSec >= 1000 && always.create.p99Ms <= 50;
    out.target = "make `always` the default if it keeps create ≥ 1000/s with p99 ≤ 50 ms";
    // Created, never started: plain removes, timed by nobody.
    for (const [i, d] of daemons.entries()) await pool(stats[i].ids, 8, (id) => cmd(d.nc, "container.remove", { id }));
  } catch (err) {
    failure = err;
  }
  const leaks: string[] = [];
  for (const d of daemons) {
    if (failure) await removeAll(d);
    leaks.push(...(await stopBenchDaemon(d)));
  }
  out.leaks = leaks;
  if (failure) throw failure;
  return out;
}
