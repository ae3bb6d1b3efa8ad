// ContainerSpec + image config → OCI runtime spec (config.json). Pure: no fs, no clock, so every
// rule below is table-tested. Defaults follow `runc spec` (mounts, masked paths) and Docker
// (capabilities, entrypoint/cmd precedence, env merge, default PATH).
import { invalid } from "../shared/errors.js";
import { hostnameFor, networkMode, type ContainerSpec, type Mount } from "../shared/spec.js";
import type { ImageConfig } from "../shared/host-facts.js";
import { checkMountShape, normTarget } from "../shared/spec-rules.js";

export interface OciSpecInput {
  name: string;
  spec: ContainerSpec;
  image: ImageConfig;
  /** Absolute path of the container's rootfs (the overlay mount point). */
  rootfs: string;
  /** `<dataRoot>/volumes`: a volume mount binds `<volumesDir>/<name>`. */
  volumesDir: string;
  /** e.g. `/berth/<node>/<id>`. */
  cgroupsPath: string;
  /** Host files bound read-only in host network mode (only those that exist; the caller checks). */
  hostNetworkFiles?: string[];
  /** Pinned namespaces to join by path (a lone container's netns, a pod's net/ipc/uts). */
  namespacePaths?: Partial<Record<"network" | "ipc" | "uts", string>>;
  /** Files made for this container, bound at /etc/hosts, /etc/hostname, /etc/resolv.conf. */
  etcFiles?: Partial<Record<"hosts" | "hostname" | "resolv.conf", string>>;
  /** Default: the spec's hostname, else the name as a DNS label (a pod's members: the pod's). */
  hostname?: string;
}

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: Record<"bounding" | "effective" | "permitted", string[]>;
    rlimits: { type: string; hard: number; soft: number }[];
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  annotations: Record<string, string>;
  linux: {
    cgroupsPath: string;
    resources: {
      devices: { allow: boolean; access: string }[];
      memory?: { limit: number };
      cpu?: { quota: number; period: number };
      pids?: { limit: number };
    };
    namespaces: { type: string; path?: string }[];
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const CPU_PERIOD = 100_000;

/** Docker's default capability set (moby oci/caps/defaults.go). */
export const DEFAULT_CAPS = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
  "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
];

const MASKED_PATHS = [
  "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
  "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi",
];
const READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

function defaultMounts(hostNetwork: boolean): OciMount[] {
  return [
    { destination: "/proc", type: "proc", source: "proc" },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    // A fresh sysfs shows the netns of the mounter; sharing the host's netns, Docker binds the
    // host's /sys instead, read-only.
    hostNetwork
      ? { destination: "/sys", type: "bind", source: "/sys", options: ["rbind", "nosuid", "noexec", "nodev", "ro"] }
      : { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
  ];
}

function userMount(m: Mount, volumesDir: string): OciMount {
  const ro = m.readOnly ? ["ro"] : [];
  const destination = normTarget(m.target);
  switch (m.type) {
    case "volume":
      return { destination, type: "bind", source: `${volumesDir}/${m.source}`, options: ["rbind", "rprivate", ...ro] };
    case "bind":
      return { destination, type: "bind", source: m.source!, options: ["rbind", "rprivate", ...ro] };
    case "tmpfs":
      return { destination, type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777", ...ro] };
  }
}

/** `uid[:gid]`, numeric, or `root`; a name would need the image's /etc/passwd. */
export function parseUser(user: string | undefined): { uid: number; gid: number } {
  if (user === undefined || user === "") return { uid: 0, gid: 0 };
  const parts = user.split(":");
  if (parts.length > 2) throw invalid(`invalid user '${user}': expected uid[:gid]`);
  const id = (s: string, what: string): number => {
    if (s === "root") return 0;
    if (!/^\d{1,10}$/.test(s)) {
      throw invalid(`invalid user '${user}': ${what} must be numeric (only the name 'root' is resolved)`);
    }
    const n = Number(s);
    if (n > 0xfffffffe) throw invalid(`invalid user '${user}': ${what} out of range`);
    return n;
  };
  const uid = id(parts[0], "uid");
  // Docker: a uid with no passwd entry gets gid 0.
  const gid = parts.length === 2 ? id(parts[1], "gid") : 0;
  return { uid, gid };
}

function envKey(e: string): string {
  const i = e.indexOf("=");
  if (i <= 0) throw invalid(`invalid env entry '${e}': expected KEY=VALUE`);
  return e.slice(0, i);
}

/** Image env first, then the spec's; a later key replaces the earlier one in place. */
export function mergeEnv(image: readonly string[], spec: readonly string[] | undefined): string[] {
  const out = new Map<string, string>();
  for (const e of [...image, ...(spec ?? [])]) {
    if (/[\0]/.test(e)) throw invalid("env entries must not contain NUL");
    out.set(envKey(e), e);
  }
  return [...out.values()];
}

/** Docker's rule: an entrypoint given in the spec replaces the image's AND drops its cmd. */
export function resolveArgs(spec: Pick<ContainerSpec, "entrypoint" | "cmd">, image: Pick<ImageConfig, "entrypoint" | "cmd">): string[] {
  const epGiven = spec.entrypoint !== undefined && spec.entrypoint !== null;
  const cmdGiven = spec.cmd !== undefined && spec.cmd !== null;
  const entrypoint = epGiven ? spec.entrypoint! : image.entrypoint ?? [];
  const cmd = cmdGiven ? spec.cmd! : epGiven ? [] : image.cmd ?? [];
  const args = [...entrypoint, ...cmd];
  if (args.length === 0 || args[0] === "") {
    throw invalid("no command to run: neither the spec nor the image gives an entrypoint or cmd");
  }
  if (args.some((a) => a.includes("\0"))) throw invalid("command arguments must not contain NUL");
  return args;
}

export function buildOciSpec(input: OciSpecInput): OciSpec {
  const { spec, image } = input;
  const mode = networkMode(spec);
  if (mode !== "none" && mode !== "host" && mode !== "bridge") throw invalid(`unknown network mode '${String(mode)}'`);
  const hostNetwork = mode === "host";
  const nsPaths = input.namespacePaths ?? {};
  if (mode === "bridge" && !nsPaths.network) throw invalid("a bridge container joins its pinned network namespace: no path given");

  const args = resolveArgs(spec, image);
  const user = parseUser(spec.user || image.user || undefined);
  const cwd = spec.workdir || image.workdir || "/";
  if (!cwd.startsWith("/") || cwd.split("/").includes("..")) {
    throw invalid(`workdir '${cwd}' must be an absolute path without '..'`);
  }

  const hostname = input.hostname ?? hostnameFor(spec, input.name);
  let env = mergeEnv(image.env ?? [], spec.env);
  const has = (k: string) => env.some((e) => e.startsWith(`${k}=`));
  if (!has("PATH")) env = [DEFAULT_PATH, ...env];
  if (!has("HOSTNAME")) env.push(`HOSTNAME=${hostname}`);
  if (!has("HOME")) env.push(`HOME=${user.uid === 0 ? "/root" : "/"}`);
  if (spec.tty && !has("TERM")) env.push("TERM=xterm"); // as Docker does: a terminal program wants one

  const userMounts = (spec.mounts ?? []).map((m) => {
    checkMountShape(m);
    return userMount(m, input.volumesDir);
  });
  const seen = new Set<string>();
  for (const m of userMounts) {
    if (seen.has(m.destination)) throw invalid(`two mounts target '${m.destination}'`);
    seen.add(m.destination);
  }
  // A user mount replaces a default one at the same place (e.g. a bigger /dev/shm); parents are
  // mounted before children, whatever order the spec lists them in.
  const depth = (p: string) => p.split("/").length;
  const extra = hostNetwork
    ? (input.hostNetworkFiles ?? []).map((f): OciMount => ({
        destination: f, type: "bind", source: f, options: ["rbind", "rprivate", "ro"],
      }))
    : Object.entries(input.etcFiles ?? {}).map(([f, source]): OciMount => ({
        destination: `/etc/${f}`, type: "bind", source, options: ["rbind", "rprivate"],
      }));
  const mounts = [
    ...defaultMounts(hostNetwork).filter((m) => !seen.has(m.destination)),
    ...extra.filter((m) => !seen.has(m.destination)),
    ...[...userMounts].sort((a, b) => depth(a.destination) - depth(b.destination)),
  ];

  const r = spec.resources ?? {};
  const resources: OciSpec["linux"]["resources"] = { devices: [{ allow: false, access: "rwm" }] };
  if (r.memoryBytes) resources.memory = { limit: r.memoryBytes };
  if (r.cpus) resources.cpu = { quota: Math.max(1000, Math.round(r.cpus * CPU_PERIOD)), period: CPU_PERIOD };
  if (r.pidsLimit) resources.pids = { limit: r.pidsLimit };

  const namespaces = ["pid", "ipc", "uts", "mount", ...(hostNetwork ? [] : ["network"])].map((type) => {
    const path = nsPaths[type as keyof typeof nsPaths];
    return path ? { type, path } : { type };
  });

  return {
    ociVersion: "1.0.2-dev",
    process: {
      terminal: spec.tty === true,
      user,
      args,
      env,
      cwd,
      capabilities: { bounding: [...DEFAULT_CAPS], effective: [...DEFAULT_CAPS], permitted: [...DEFAULT_CAPS] },
      // None, like Docker: the container inherits conmon's (so the daemon's) limits. Raising a
      // hard limit fails without CAP_SYS_RESOURCE in the caller, which some hosts lack.
      rlimits: [],
      noNewPrivileges: true,
    },
    root: { path: input.rootfs, readonly: false },
    hostname,
    mounts,
    annotations: { ...(spec.annotations ?? {}) },
    linux: {
      cgroupsPath: input.cgroupsPath,
      resources,
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
    },
  };
}
