// The rules of a container spec that a JSON schema cannot say: pure, checked once where a spec
// comes in (create, and update merged with the current spec), and by the OCI config builder as a
// last guard before anything reaches the host.
import { invalid } from "./errors.js";
import { normalizeSignal } from "./signals.js";
import type { ContainerSpec, Mount, Network } from "./spec.js";
import { isIPv4 } from "./ip.js";
import { checkCheckpointAnnotation } from "./checkpoint-annotation.js";

/** Volume names: same rule as container names (API.md), so never "." or ".." or a slash. */
export const VOLUME_NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export function checkVolumeName(name: string): string {
  if (typeof name !== "string" || !VOLUME_NAME_RE.test(name) || name.includes("..")) {
    throw invalid(`invalid volume name '${String(name)}': must match ${VOLUME_NAME_RE.source} without '..'`);
  }
  return name;
}

/** Rules across fields that a JSON schema cannot say. */
export function validateSpecRules(spec: ContainerSpec): void {
  checkCheckpointAnnotation(spec.annotations);
  const policy = spec.restartPolicy?.name ?? "no";
  if (spec.autoRemove && policy !== "no") {
    throw invalid(`autoRemove cannot be combined with restart policy '${policy}'`);
  }
  if (spec.pod == null) checkNetwork(spec.network);
  const b = spec.restartPolicy?.backoff;
  if (b?.initialMs !== undefined && b.maxMs !== undefined && b.initialMs > b.maxMs) {
    throw invalid("restartPolicy.backoff.initialMs must not exceed maxMs");
  }
  if (spec.restartPolicy?.maxRetries && policy !== "on-failure") {
    throw invalid("restartPolicy.maxRetries applies only to 'on-failure'");
  }
  if (spec.stopSignal !== undefined) normalizeSignal(spec.stopSignal);
  // Piped stdin needs a stream protocol of its own (conmon's non-terminal attach); a terminal covers -it.
  if (spec.stdin && !spec.tty) throw invalid("stdin without tty is not supported yet: use tty and stdin together (-it)");
  if (spec.pod != null && (spec.network || spec.hostname)) throw invalid("a pod member takes its network and hostname from its pod");
  checkMounts(spec.mounts);
}

/** Every mount's shape, and no two on one target. */
export function checkMounts(mounts: readonly Mount[] | undefined): void {
  const targets = new Set<string>();
  for (const m of mounts ?? []) {
    checkMountShape(m);
    const t = normTarget(m.target);
    if (targets.has(t)) throw invalid(`two mounts target '${t}'`);
    targets.add(t);
  }
}

/** Shape checks that need no fs: absolute target without '..', source rules per type. */
export function checkMountShape(m: Mount): void {
  const t = m.target;
  if (typeof t !== "string" || !t.startsWith("/") || /[\0\n]/.test(t)) {
    throw invalid(`mount target '${t}' must be an absolute path`);
  }
  if (t.split("/").includes("..")) throw invalid(`mount target '${t}' must not contain '..'`);
  if (t.replace(/\/+$/, "") === "") throw invalid("mount target '/' is not allowed");
  switch (m.type) {
    case "volume":
      if (!m.source) throw invalid(`volume mount at '${t}' needs a source (the volume name)`);
      checkVolumeName(m.source);
      break;
    case "bind":
      if (!m.source || !m.source.startsWith("/") || /[\0\n]/.test(m.source)) {
        throw invalid(`bind mount at '${t}' needs an absolute source path`);
      }
      if (m.source.split("/").includes("..")) throw invalid(`bind source '${m.source}' must not contain '..'`);
      break;
    case "tmpfs":
      if (m.source) throw invalid(`tmpfs mount at '${t}' takes no source`);
      break;
    default:
      throw invalid(`unknown mount type '${(m as Mount).type}'`);
  }
}

export const normTarget = (t: string) => ("/" + t.split("/").filter((s) => s && s !== ".").join("/"));


/** The network's own rules; whether an IP is in the node's subnet and free is the node's to say. */
export function checkNetwork(n: Network | undefined): void {
  const mode = n?.mode ?? "bridge";
  if (n?.ip !== undefined) {
    if (mode !== "bridge") throw invalid(`network.ip needs network mode 'bridge', not '${mode}'`);
    if (!isIPv4(n.ip)) throw invalid(`network.ip '${n.ip}' is not an IPv4 address`);
  }
  const ports = n?.ports ?? [];
  if (ports.length && mode !== "bridge") throw invalid(`published ports need network mode 'bridge', not '${mode}'`);
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i];
    if (p.hostIp !== undefined && !isIPv4(p.hostIp)) throw invalid(`port ${p.hostPort}: hostIp '${p.hostIp}' is not an IPv4 address`);
    for (let j = 0; j < i; j++) {
      if (portsOverlap(p, ports[j])) throw invalid(`host port ${p.hostPort}/${p.protocol ?? "tcp"} is published twice`);
    }
  }
}

/** Two publications collide on the host: same port and protocol, and addresses that overlap. */
export function portsOverlap(a: PortLike, b: PortLike): boolean {
  if (a.hostPort !== b.hostPort || (a.protocol ?? "tcp") !== (b.protocol ?? "tcp")) return false;
  const any = (ip?: string) => !ip || ip === "0.0.0.0";
  return any(a.hostIp) || any(b.hostIp) || a.hostIp === b.hostIp;
}

type PortLike = { hostPort: number; protocol?: string; hostIp?: string };

/** Annotations after an update's patch (a key set to null goes). */
export function patchAnnotations(current: Readonly<Record<string, string>> | undefined, patch: Readonly<Record<string, string | null>>): Record<string, string> {
  const out: Record<string, string> = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}
