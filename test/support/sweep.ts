// The last step of a test's clean-up, after its daemon is down: whatever of the test's own data
// root is still on the host (a daemon that could not start again to remove its containers, say,
// because the cluster it needs did not come back) goes through the runtime's own clean-up — its
// runc containers (runc in the data root's own runc root: only what this test made), their
// rootfs mounts and conmon, the pinned namespaces and bridge attachments, the bridge and its
// subnet claim once unused — and then the data root and its socket dir.
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { HostRuntime } from "../../src/runtime/host.js";
import { Paths } from "../../src/runtime/paths.js";

export async function sweepDataRoot(dataRoot: string, node: string): Promise<void> {
  const paths = new Paths(dataRoot);
  // The common case: the daemon removed everything; nothing to ask the runtime.
  const left = [...(await readdir(paths.containersDir).catch(() => [] as string[])), ...(await readdir(paths.sandboxesDir).catch(() => [] as string[]))];
  if (left.length || (await claimsSubnet(dataRoot))) await sweepHost(dataRoot, node, paths);
  await rm(dataRoot, { recursive: true, force: true });
  await rm(paths.socketDir, { recursive: true, force: true });
}

/** Whether a subnet claim (bridge-network.ts: a file per subnet naming its data root) is this data root's: its bridge is still up. */
async function claimsSubnet(dataRoot: string): Promise<boolean> {
  const dir = "/run/berth/subnets";
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if ((await readFile(join(dir, f), "utf8").catch(() => "")).trim() === dataRoot) return true;
  }
  return false;
}

async function sweepHost(dataRoot: string, node: string, paths: Paths): Promise<void> {
  console.error(`sweep ${dataRoot}: its daemon left containers, sandboxes or its bridge; removing them`);
  const rt = new HostRuntime({ dataRoot, node, log: pino({ level: "silent" }) });
  await rt.init().catch(() => undefined);
  const ids = new Set([
    ...(await rt.runc.list().catch(() => [])).map((s) => s.id),
    ...(await readdir(paths.containersDir).catch(() => [] as string[])),
  ]);
  for (const id of ids) {
    await rt.runc.kill(id, "SIGKILL", true).catch(() => undefined);
    await rt.cleanup(id).catch((err) => console.error(`sweep ${dataRoot}: container ${id}:`, err));
  }
  try {
    for (const key of await rt.sandboxes.keys()) await rt.sandboxes.remove(key).catch((err) => console.error(`sweep ${dataRoot}: sandbox ${key}:`, err));
    await rt.network.releaseIfUnused().catch(() => undefined);
  } catch {
    /* init failed: nothing of a network was made */
  }
}
