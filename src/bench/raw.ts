// The raw baseline of a run + remove cycle: conmon and runc on an overlay, as berth does it, with
// nothing of berth's own. With `net`, the network is set up and torn down by hand around it.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { execa } from "execa";

/** A network made by hand for one raw cycle: `before` returns the netns path to join. */
export interface RawNet {
  before(id: string, i: number): Promise<string>;
  after(id: string): Promise<void>;
}

export async function rawCycle(lower: string, work: string, i: number, net?: RawNet): Promise<number> {
  const id = `raw${randomBytes(6).toString("hex")}${i}`;
  const dir = join(work, id);
  const [rootfs, upper, wdir, exits, socks] = ["rootfs", "upper", "work", "exits", "s"].map((d) => join(dir, d));
  for (const d of [rootfs, upper, wdir, exits, socks]) await mkdir(d, { recursive: true });
  const spec = JSON.parse(readFileSync(join(work, "config.template.json"), "utf8"));
  spec.root = { path: rootfs, readonly: false };
  spec.process.terminal = false;
  spec.process.args = ["sleep", "1000"];
  spec.linux.cgroupsPath = `/berth-bench/${id}`;
  const t0 = performance.now();
  const netns = await net?.before(id, i);
  if (netns) spec.linux.namespaces = spec.linux.namespaces.map((n: { type: string }) => (n.type === "network" ? { type: "network", path: netns } : n));
  await execa("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${wdir}`, rootfs]);
  await writeFile(join(dir, "config.json"), JSON.stringify(spec));
  const root = join(work, "runc");
  await execa("conmon", [
    "--api-version", "1", "-c", id, "-u", id, "-n", id, "-r", "/usr/sbin/runc", "-b", dir,
    "-p", join(dir, "pid"), "--conmon-pidfile", join(dir, "conmon.pid"), "--exit-dir", exits,
    "--socket-dir-path", socks, "-l", `k8s-file:${join(dir, "ctr.log")}`, "--runtime-arg", `--root=${root}`,
  ]);
  while (!existsSync(join(dir, "pid"))) await new Promise((r) => setTimeout(r, 2));
  await execa("runc", ["--root", root, "start", id]);
  await execa("runc", ["--root", root, "kill", id, "KILL"]);
  while (!existsSync(join(exits, id))) await new Promise((r) => setTimeout(r, 2));
  await execa("runc", ["--root", root, "delete", "--force", id]);
  await execa("umount", [rootfs]);
  await net?.after(id);
  const ms = performance.now() - t0;
  await rm(dir, { recursive: true, force: true });
  return ms;
}
