// In CI a missing prerequisite fails the run; on a developer's machine the suite is skipped.
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

export const IN_CI = process.env.CI === "true";

function onPath(bin: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${bin}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** The demo images an upgrade goes to (deploy/build-busybox-image.sh builds them with the seed). */
export const UPGRADE_IMAGES = {
  "busybox:v2": "/opt/berth/images/busybox-v2.oci.tar",
  "busybox:broken": "/opt/berth/images/busybox-broken.oci.tar",
} as const;

const checks: Record<string, () => boolean> = {
  "nats-server": () => ["/usr/bin/nats-server", "/usr/sbin/nats-server"].some(existsSync) || onPath("nats-server"),
  runc: () => onPath("runc"),
  conmon: () => onPath("conmon"),
  root: () => process.getuid?.() === 0,
  tar: () => onPath("tar"),
  openssl: () => onPath("openssl"),
  cni: () => ["bridge", "host-local", "portmap", "loopback"].every((p) => existsSync(`${process.env.BERTH_CNI_PATH ?? "/usr/lib/cni"}/${p}`)) && onPath("iptables"),
  "busybox image": () => existsSync(process.env.BERTH_SEED_IMAGE ?? "/opt/berth/images/busybox-latest.oci.tar"),
  "upgrade images": () => Object.values(UPGRADE_IMAGES).every(existsSync),
  // The setup's CRIU 4 wrapper, and `criu check` passing on this kernel.
  criu: () => {
    const criu = process.env.BERTH_CRIU ?? "/opt/berth/criu/criu";
    if (!existsSync(criu)) return false;
    try {
      execFileSync(criu, ["check"], { stdio: "ignore", timeout: 30_000 });
      return true;
    } catch {
      return false;
    }
  },
};

/** Names of missing prerequisites; throws in CI so the run fails instead of skipping. */
export function missing(...names: (keyof typeof checks)[]): string[] {
  const gone = names.filter((n) => !checks[n]());
  if (gone.length && IN_CI) throw new Error(`missing prerequisites in CI: ${gone.join(", ")}`);
  return gone;
}
