// Fault injection for crash tests: BERTH_FAULT=<point>[:<n>] makes the daemon die abruptly
// (SIGKILL to itself, nothing flushed) the n-th time (default: the first) it passes that point.
// Inert when unset. Points:
//   after-intent     an intent event was appended, before anyone acted on it
//   after-action     the host action of an intent was done, before its outcome was appended
//   snapshot-write   in the middle of writing a projection snapshot
//   recovery         during recovery, after the host facts were gathered
export type FaultPoint = "after-intent" | "after-action" | "snapshot-write" | "recovery";

const spec = process.env.BERTH_FAULT ?? "";
const [point, nth] = spec.split(":");
let remaining = Number(nth ?? 1) || 1;

export function fault(at: FaultPoint): void {
  if (!spec || point !== at) return;
  if (--remaining > 0) return;
  process.stderr.write(`berth: BERTH_FAULT: dying at ${at}\n`);
  process.kill(process.pid, "SIGKILL");
}
