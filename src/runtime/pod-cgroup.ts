// A pod's cgroup: the parent of its members' cgroups, holding the pod's own limits, so that all
// members together stay within them (what a Kubernetes pod's cgroup does). runc makes each
// member's cgroup below it; berth makes the pod's and writes its limits, on cgroup v2 or v1.
import { access, mkdir, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Resources } from "../shared/spec.js";
import { CPU_PERIOD } from "./oci-spec.js";

const ROOT = "/sys/fs/cgroup";
const exists = (p: string) => access(p).then(() => true, () => false);
const isV2 = () => exists(join(ROOT, "cgroup.controllers"));

/** Makes the pod's cgroup at `rel` (e.g. `berth/n1/pod-<id>`) with its limits; idempotent. */
export async function ensurePodCgroup(rel: string, r: Resources | undefined): Promise<void> {
  const mem = r?.memoryBytes || 0;
  const quota = r?.cpus ? Math.max(1000, Math.round(r.cpus * CPU_PERIOD)) : 0;
  const pids = r?.pidsLimit || 0;
  if (await isV2()) {
    // Each level must hand the controllers down (subtree_control) before its child can use them.
    let dir = ROOT;
    for (const part of rel.split("/")) {
      await writeFile(join(dir, "cgroup.subtree_control"), "+memory +cpu +pids").catch(() => undefined);
      dir = join(dir, part);
      await mkdir(dir, { recursive: true });
    }
    await writeFile(join(dir, "memory.max"), mem ? String(mem) : "max");
    await writeFile(join(dir, "cpu.max"), quota ? `${quota} ${CPU_PERIOD}` : `max ${CPU_PERIOD}`);
    await writeFile(join(dir, "pids.max"), pids ? String(pids) : "max");
    return;
  }
  const v1 = async (ctrl: string, files: [string, string][]) => {
    const dir = join(ROOT, ctrl, rel);
    await mkdir(dir, { recursive: true });
    for (const [f, v] of files) await writeFile(join(dir, f), v);
  };
  await v1("memory", [["memory.limit_in_bytes", mem ? String(mem) : "-1"]]);
  await v1("cpu", [["cpu.cfs_period_us", String(CPU_PERIOD)], ["cpu.cfs_quota_us", quota ? String(quota) : "-1"]]);
  await v1("pids", [["pids.max", pids ? String(pids) : "max"]]);
}

/** Removes the pod's cgroup in every hierarchy (empty ones only: a live member keeps it). */
export async function removePodCgroup(rel: string): Promise<void> {
  const dirs = (await isV2()) ? [join(ROOT, rel)] : ["memory", "cpu", "pids", "cpuacct", "cpuset", "blkio", "devices", "freezer", "systemd", "net_cls", "perf_event", "hugetlb", "unified"].map((c) => join(ROOT, c, rel));
  await Promise.all(dirs.map((d) => rmdir(d).catch(() => undefined)));
}
