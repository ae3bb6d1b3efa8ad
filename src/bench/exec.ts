// The exec figures (issue 6, "Benchmark"): `container.exec` of `true` over NATS, median and p99,
// against raw `runc exec` of the same container in the same run, the two interleaved so that a
// busy moment of the machine hits both. Not a test: nothing passes or fails.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { cmd, pct, r1, removeAll, startBenchDaemon, stopBenchDaemon } from "./proc.js";

/** `runc exec` as a user would type it: its exit, nothing else. */
function rawExec(root: string, id: string): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn("runc", ["--root", root, "exec", id, "true"], { stdio: "ignore" });
    p.once("error", reject);
    p.once("exit", (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`runc exec exited ${code}`))));
  });
}

export async function benchExec(): Promise<Record<string, unknown>> {
  const N = Number(process.env.BENCH_EXEC_RUNS ?? 200);
  const d = await startBenchDaemon("exec");
  try {
    const c = await cmd(d.nc, "container.run", { image: "busybox:latest", cmd: ["sleep", "1000"] });
    const id = c.id as string;
    const root = join(d.dataRoot, "runc");
    // Warm both paths (page cache, JIT, the validator's first compile).
    for (let i = 0; i < 5; i++) {
      await cmd(d.nc, "container.exec", { id, cmd: ["true"] });
      await rawExec(root, id);
    }
    const berth: number[] = [];
    const raw: number[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = performance.now();
      const r = await cmd(d.nc, "container.exec", { id, cmd: ["true"] });
      if (r.exitCode !== 0) throw new Error(`exec true exited ${r.exitCode}`);
      berth.push(performance.now() - t0);
      raw.push(await rawExec(root, id));
    }
    await removeAll(d);
    const med = pct(berth, 50);
    const rawMed = pct(raw, 50);
    return {
      runs: N,
      berthMedianMs: r1(med), berthP99Ms: r1(pct(berth, 99)),
      rawMedianMs: r1(rawMed), rawP99Ms: r1(pct(raw, 99)),
      ratio: Math.round((med / rawMed) * 100) / 100, target: "≤ 1.5",
      natsSync: d.natsSync,
    };
  } finally {
    await stopBenchDaemon(d);
  }
}
