// Fault injection for crash tests: BERTH_FAULT=<point>[:<n>] makes the daemon die abruptly
// (SIGKILL to itself, nothing flushed) the n-th time (default: the first) it passes that point.
// Inert when unset. Points:
//   after-intent     an intent event was appended, before anyone acted on it
//   after-action     the host action of an intent was done, before its outcome was appended
//   snapshot-write   in the middle of writing a projection snapshot
//   recovery         during recovery, after the host facts were gathered
//   after-attach     a start's CNI ADD (and netns pin) is done, before the container is created
//   after-detach     a removal's CNI DEL is done, before it is recorded (a container's or a pod's)
//   upgrade-stopped  an upgrade or rollback stopped the process that ran (its exit is recorded)
//   upgrade-layer    a revision's rw layer is switched on the host, before it is recorded
//   upgrade-started  the new (or, going back, the old) revision's process runs, before it is recorded
//   upgrade-gate     the new revision is up and its health gate is being watched
//   upgrade-rollback the upgrade was recorded as failed, before going back
//   upgrade-settling the saga is done on the host, before its outcome is recorded
//   checkpoint-dumped  CRIU's dump and the rw layer are on disk, before the exit and the upload
//   checkpoint-uploaded the archive is in the object store, before its record
//   restore-fetched  a restore's archive is unpacked and verified, before CRIU restores it
//   checkpoint-uploading the archive's first bytes went to the object store, the rest not yet
//   pod-checkpoint-frozen   every member of a pod checkpoint is frozen, before the first dump
//   pod-checkpoint-dumped   every member is dumped, before the pod checkpoint's record
//   pod-checkpoint-recorded the pod checkpoint's record is written, before its members are stopped or thawed
//   migrate-dumped   a migration's source stored the dump, before it says so (the target's turn)
//   migrate-restored the migration's target restored it, before it says so (ownership moves)
//   migrate-compensated the source restored it after the target failed, before it says so
//   migrated-away    a migration's source read that it runs on the target, before its own clean-up
//   migrate-serving  a direct migration's source sent the archive's first frame to the target
//   migrate-fetching a direct migration's target took the archive's first frame
//   offline-flushing the offline journal's first fact is in the log, the rest not yet
//   lazy-restoring   a restored process runs, while CRIU's lazy-pages daemon may still copy its memory in
//   copy-retiring    the log says a container with a local checkpoint is gone, before its copy is deleted
export type FaultPoint =
  | "after-intent" | "after-action" | "snapshot-write" | "recovery" | "after-attach" | "after-detach"
  | "upgrade-stopped" | "upgrade-layer" | "upgrade-started" | "upgrade-gate" | "upgrade-rollback" | "upgrade-settling"
  | "checkpoint-dumped" | "checkpoint-uploaded" | "restore-fetched" | "checkpoint-uploading"
  | "pod-checkpoint-frozen" | "pod-checkpoint-dumped" | "pod-checkpoint-recorded"
  | "migrate-dumped" | "migrate-restored" | "migrate-compensated" | "migrate-serving" | "migrate-fetching" | "offline-flushing" | "migrated-away"
  | "copy-retiring" | "lazy-restoring";

const spec = process.env.BERTH_FAULT ?? "";
const [point, nth] = spec.split(":");
let remaining = Number(nth ?? 1) || 1;

export function fault(at: FaultPoint): void {
  if (!spec || point !== at) return;
  if (--remaining > 0) return;
  process.stderr.write(`berth: BERTH_FAULT: dying at ${at}\n`);
  process.kill(process.pid, "SIGKILL");
}

/** Whether a point is armed (to add a probe only where one is wanted, e.g. inside a stream). */
export function armed(at: FaultPoint): boolean {
  return point === at;
}

/**
 * Failure injection for tests of compensation: BERTH_FAIL=<point> makes that step throw (the
 * daemon lives on), where no real failure can be arranged on one machine. Inert when unset.
 *   migrate-restore  a migration's target cannot restore the container
 */
export function failAt(at: "migrate-restore"): void {
  if (process.env.BERTH_FAIL === at) throw new Error(`BERTH_FAIL: injected failure at ${at}`);
}
