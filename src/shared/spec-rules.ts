// The rules of a container spec that a JSON schema cannot say: pure, checked once where a spec
// comes in (create, and update merged with the current spec), and by the OCI config builder as a
// last guard before anything reaches the host.
import { invalid } from "./errors.js";
import { normalizeSignal } from "./signals.js";
import type { ContainerSpec, Mount } from "./spec.js";

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
  const policy = spec.restartPolicy?.name ?? "no";
  if (spec.autoRemove && policy !== "no") {
    throw invalid(`autoRemove cannot be combined with restart policy '${policy}'`);
  }
  if (spec.network?.mode === "bridge") {
    throw invalid("network mode 'bridge' is not supported yet; use 'none' or 'host'");
  }
  if (spec.network?.ip !== undefined) throw invalid("network.ip needs bridge networking, which is not supported yet");
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
  if (spec.pod != null) throw invalid("pods are not supported yet: 'pod' must be null or absent");
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

