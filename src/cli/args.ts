// `berth run|create` arguments → a container spec (API.md), docker-style. Pure apart from
// commander, so the whole path from argv to spec is unit-tested as the CLI runs it.
import { Command, InvalidArgumentError } from "commander";
import type { ContainerSpec, Mount, PortMapping, Resources, RestartPolicy } from "../shared/spec.js";
import { parseSize } from "../shared/sizes.js";

export interface RunOptions {
  name?: string;
  env?: string[];
  entrypoint?: string;
  workdir?: string;
  user?: string;
  label?: string[];
  annotation?: string[];
  restart?: RestartPolicy;
  rm?: boolean;
  memory?: number;
  cpus?: number;
  pidsLimit?: number;
  volume?: Mount[];
  tmpfs?: Mount[];
  network?: "none" | "host" | "bridge";
  ip?: string;
  publish?: PortMapping[];
  hostname?: string;
  pod?: string;
  stopSignal?: string;
  stopTimeout?: number;
  node?: string;
  detach?: boolean;
  interactive?: boolean;
  tty?: boolean;
  json?: boolean;
}


/** `1048576`, `512k`, `64m`, `1g`, `1.5g`, `64MiB`, `64mb` → bytes (powers of 1024, as docker). */
export function parseBytes(s: string): number {
  const n = parseSize(s);
  if (Number.isNaN(n)) throw new InvalidArgumentError(`'${s}' is not a size: use bytes or a number with k, m, g or t`);
  return n;
}

/** `no`, `always`, `unless-stopped`, `on-failure` or `on-failure:N`. */
export function parseRestart(s: string): RestartPolicy {
  const m = /^(no|always|unless-stopped|on-failure)(?::(\d+))?$/.exec(s);
  if (!m || (m[2] !== undefined && m[1] !== "on-failure")) {
    throw new InvalidArgumentError(`'${s}' is not a restart policy: no, always, on-failure[:N] or unless-stopped`);
  }
  const p: RestartPolicy = { name: m[1] as RestartPolicy["name"] };
  if (m[2] !== undefined) p.maxRetries = Number(m[2]);
  return p;
}

/**
 * `NAME:/target[:ro|rw]` is a named volume, `/host:/target[:ro|rw]` a bind mount, a lone
 * `/target` an anonymous volume.
 */
export function parseVolume(s: string): Mount {
  const parts = s.split(":");
  let readOnly = false;
  if (parts.length === 3 || (parts.length === 2 && !parts[1].startsWith("/"))) {
    const mode = parts.pop()!;
    if (mode !== "ro" && mode !== "rw") throw new InvalidArgumentError(`'${s}': mode must be ro or rw, not '${mode}'`);
    readOnly = mode === "ro";
  }
  if (parts.length === 1) {
    if (!parts[0].startsWith("/")) throw new InvalidArgumentError(`'${s}': the target must be an absolute path`);
    return { type: "volume", target: parts[0], ...(readOnly ? { readOnly } : {}) };
  }
  if (parts.length !== 2 || !parts[0] || !parts[1]) throw new InvalidArgumentError(`'${s}' is not SOURCE:/TARGET[:ro]`);
  const [source, target] = parts;
  if (!target.startsWith("/")) throw new InvalidArgumentError(`'${s}': the target must be an absolute path`);
  return { type: source.startsWith("/") ? "bind" : "volume", source, target, readOnly };
}

/** docker's `-p [hostIp:]hostPort:containerPort[/tcp|udp]` (a host port is required: berth picks none). */
export function parsePublish(s: string): PortMapping {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(s);
  if (!m) throw new InvalidArgumentError(`'${s}' is not [hostIp:]hostPort:containerPort[/tcp|udp]`);
  const port = (v: string, what: string) => {
    const n = Number(v);
    if (!(n >= 1 && n <= 65535)) throw new InvalidArgumentError(`'${s}': the ${what} port must be 1-65535`);
    return n;
  };
  const p: PortMapping = { hostPort: port(m[2], "host"), containerPort: port(m[3], "container") };
  if (m[4]) p.protocol = m[4] as "tcp" | "udp";
  if (m[1]) p.hostIp = m[1];
  return p;
}

export function parseTmpfs(s: string): Mount {
  if (!s.startsWith("/")) throw new InvalidArgumentError(`'${s}': the target must be an absolute path`);
  if (s.includes(":")) throw new InvalidArgumentError(`'${s}': tmpfs options are not supported`);
  return { type: "tmpfs", target: s };
}

/** `k=v` (or a bare `k`, an empty value) into a record. */
export function parseKeyValues(what: string, items: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const i = item.indexOf("=");
    const k = i < 0 ? item : item.slice(0, i);
    if (!k) throw new InvalidArgumentError(`${what} '${item}' has no key`);
    out[k] = i < 0 ? "" : item.slice(i + 1);
  }
  return out;
}

const int = (what: string, min: number) => (s: string) => {
  if (!/^\d+$/.test(s) || Number(s) < min) throw new InvalidArgumentError(`${what} must be an integer ≥ ${min}`);
  return Number(s);
};
const num = (s: string) => {
  const n = Number(s);
  if (!/^\d+(\.\d+)?$/.test(s) || !Number.isFinite(n)) throw new InvalidArgumentError("must be a number");
  return n;
};
const collect = <T>(f: (s: string) => T) => (s: string, prev: T[] = []) => [...prev, f(s)];
const collectStr = (s: string, prev: string[] = []) => [...prev, s];
const oneOf = <T extends string>(...allowed: T[]) => (s: string): T => {
  if (!(allowed as string[]).includes(s)) throw new InvalidArgumentError(`must be one of ${allowed.join(", ")}`);
  return s as T;
};

/** The options, arguments and parsing mode shared by `run` and `create`. */
export function addRunOptions(cmd: Command): Command {
  return (
    cmd
      .argument("<image>", "image name or digest")
      .argument("[command...]", "command and arguments (replaces the image's cmd)")
      // Everything after IMAGE belongs to the container: `sh -c 'echo hi'` is not ours to parse.
      .passThroughOptions()
      .option("--name <name>", "container name")
      // run returns once the container has started, printing its id (unless -t): -d is accepted
      // so that docker's and podman's `run -d …` lines work as they are.
      .option("-d, --detach", "run in the background (the default without -t)")
      .option("-t, --tty", "give the container a terminal; run attaches to it (unless -d)")
      .option("-i, --interactive", "the terminal takes input (with -t)")
      .option("-e, --env <K=V>", "environment variable (repeatable); a bare K copies it from here", collectStr)
      .option("--entrypoint <path>", "replace the image's entrypoint (\"\" clears it)")
      .option("-w, --workdir <dir>", "working directory inside the container")
      .option("-u, --user <uid[:gid]>", "user to run as")
      .option("-l, --label <k=v>", "label (repeatable)", collectStr)
      .option("--annotation <k=v>", "annotation (repeatable)", collectStr)
      .option("--restart <policy>", "no, always, on-failure[:N] or unless-stopped", parseRestart)
      .option("--rm", "remove the container when it exits")
      .option("-m, --memory <bytes>", "memory limit: bytes or 64m, 1g…", parseBytes)
      .option("--cpus <n>", "CPU limit, e.g. 0.5", num)
      .option("--pids-limit <n>", "process limit", int("--pids-limit", 0))
      .option("-v, --volume <src:/dst[:ro]>", "volume or bind mount (repeatable)", collect(parseVolume))
      .option("--tmpfs <path>", "tmpfs mount (repeatable)", collect(parseTmpfs))
      .option("--network <mode>", "none, host or bridge", oneOf("none", "host", "bridge"))
      .option("--ip <addr>", "IP address on the bridge network")
      .option("-p, --publish <[ip:]hostPort:port[/proto]>", "publish a port on the host (repeatable)", collect(parsePublish))
      .option("--hostname <name>", "the container's hostname (default: its name)")
      .option("--pod <pod>", "run in this pod (its network, IPC and UTS namespaces)")
      .option("--stop-signal <signal>", "signal that stops the container")
      .option("--stop-timeout <seconds>", "seconds between the stop signal and SIGKILL", int("--stop-timeout", 0))
      .option("--node <node>", "the node to run on")
      .option("--json", "machine-readable output")
  );
}

/** -m, --cpus and --pids-limit as a spec's (or a pod's) resources. */
export function resourcesFromOptions(o: { memory?: number; cpus?: number; pidsLimit?: number }): Resources {
  const r: Resources = {};
  if (o.memory !== undefined) r.memoryBytes = o.memory;
  if (o.cpus !== undefined) r.cpus = o.cpus;
  if (o.pidsLimit !== undefined) r.pidsLimit = o.pidsLimit;
  return r;
}

/** The same options for a pod: its cgroup's limits. */
export function addResourceOptions(cmd: Command, of: string): Command {
  return cmd
    .option("-m, --memory <bytes>", `memory limit of ${of}: bytes or 64m, 1g…`, parseBytes)
    .option("--cpus <n>", `CPU limit of ${of}, e.g. 0.5`, num)
    .option("--pids-limit <n>", `process limit of ${of}`, int("--pids-limit", 0));
}

export function specFromOptions(
  o: RunOptions,
  image: string,
  command: readonly string[],
  hostEnv: NodeJS.ProcessEnv = process.env,
): ContainerSpec {
  const spec: ContainerSpec = { image };
  if (o.name !== undefined) spec.name = o.name;
  if (o.entrypoint !== undefined) spec.entrypoint = o.entrypoint === "" ? [] : [o.entrypoint];
  if (command.length) spec.cmd = [...command];
  const env = (o.env ?? []).flatMap((e) => (e.includes("=") ? [e] : hostEnv[e] !== undefined ? [`${e}=${hostEnv[e]}`] : []));
  if (env.length) spec.env = env;
  if (o.workdir !== undefined) spec.workdir = o.workdir;
  if (o.user !== undefined) spec.user = o.user;
  if (o.label?.length) spec.labels = parseKeyValues("label", o.label);
  if (o.annotation?.length) spec.annotations = parseKeyValues("annotation", o.annotation);
  if (o.restart) spec.restartPolicy = o.restart;
  if (o.rm) spec.autoRemove = true;
  if (o.tty) spec.tty = true;
  if (o.interactive) spec.stdin = true;
  const resources = resourcesFromOptions(o);
  if (Object.keys(resources).length) spec.resources = resources;
  const mounts = [...(o.volume ?? []), ...(o.tmpfs ?? [])];
  if (mounts.length) spec.mounts = mounts;
  if (o.network !== undefined || o.ip !== undefined || o.publish?.length) {
    spec.network = { mode: o.network ?? "bridge", ...(o.ip !== undefined ? { ip: o.ip } : {}), ...(o.publish?.length ? { ports: o.publish } : {}) };
  }
  if (o.hostname !== undefined) spec.hostname = o.hostname;
  if (o.pod !== undefined) spec.pod = o.pod;
  if (o.stopSignal !== undefined) spec.stopSignal = o.stopSignal;
  if (o.stopTimeout !== undefined) spec.stopTimeoutSec = o.stopTimeout;
  if (o.node !== undefined) spec.node = o.node;
  return spec;
}

/**
 * Parse `run`/`create` arguments (after the verb) into a spec, exactly as the CLI does.
 * Throws commander's CommanderError on bad usage.
 */
export function parseRunArgs(argv: readonly string[], hostEnv: NodeJS.ProcessEnv = process.env): ContainerSpec {
  let spec: ContainerSpec | undefined;
  const cmd = addRunOptions(new Command("run"))
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined })
    .action((image: string, command: string[], o: RunOptions) => {
      spec = specFromOptions(o, image, command, hostEnv);
    });
  cmd.parse([...argv], { from: "user" });
  return spec!;
}
