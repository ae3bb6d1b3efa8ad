// The in-place upgrade, the pure parts (DESIGN.md "Upgrade in place", PouchContainer's rules):
// how the next revision's spec is merged from the container's, the old and the new image's config
// and the request; and, as a saga on the container's own subject, what the owning node does next
// from the state the log gives (`upgradeNext`), so recovery after a crash runs the same code as
// normal progress.
import { invalid } from "../../shared/errors.js";
import { anonVolumeName, type ContainerSpec, type Mount, type Resources } from "../../shared/spec.js";
import { normTarget } from "../../shared/spec-rules.js";
import type { ImageConfig } from "../../shared/host-facts.js";
import type { NewEventOf } from "../decider.js";
import type { ContainerEvent, Revision } from "../../events/types.js";
import { sagaTarget, type ContainerState } from "./state.js";

/** What `container.upgrade` may change besides the image (API.md). */
export interface UpgradeChanges {
  entrypoint?: string[] | null;
  cmd?: string[] | null;
  env?: string[];
  labels?: Record<string, string>;
  resources?: Resources;
}

export interface MergeInput {
  containerId: string;
  spec: ContainerSpec;
  /** The config of the image it runs now; null when that image is no longer known (its values then count as the container's). */
  oldImage: ImageConfig | null;
  newImage: ImageConfig;
  newImageName: string;
  changes: UpgradeChanges;
}

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const envKey = (e: string) => (e.includes("=") ? e.slice(0, e.indexOf("=")) : e);

/** `base` with `over`'s entries replacing those of the same key (order: base's, then new keys). */
function mergeEnv(base: readonly string[], over: readonly string[]): string[] {
  const out = new Map<string, string>();
  for (const e of [...base, ...over]) {
    out.delete(envKey(e));
    out.set(envKey(e), e);
  }
  return [...out.values()];
}

/**
 * The container's own value of an argv (entrypoint or cmd) survives the upgrade when it differs
 * from the old image's. When both are empty the container's is "unset", which is the new image's
 * (as Pouch, whose create fills an empty entrypoint from the image).
 */
function keepOwn(effective: readonly string[], oldImage: readonly string[]): boolean {
  return effective.length > 0 && !same(effective, oldImage);
}

/**
 * The next revision's spec. Entrypoint and cmd: the request's if given; else the container's own
 * (set by its spec and not the old image's; a cmd: not empty and not the one the old image gave);
 * else the new image's (its cmd only with its entrypoint, as Docker). Env and labels: the
 * new image's, overridden by the container's own (those that differ from the old image's), then
 * by the request's. Workdir, user and stop signal stay the container's where it set them (the
 * image gives them otherwise). Volumes the new image declares and the container lacks are added
 * as anonymous volumes; network, mounts, restart policy, healthcheck and log stay; resources as
 * the request changes them.
 */
export function mergeUpgrade(m: MergeInput): ContainerSpec {
  const { spec, newImage, changes } = m;
  const old: ImageConfig = m.oldImage ?? { entrypoint: null, cmd: null, env: [], workdir: "", user: "", stopSignal: null, labels: {} };
  const epGiven = spec.entrypoint != null;
  // What ran before: Docker's rule drops the image's cmd under an entrypoint of the spec's own.
  const oldCmd = epGiven ? [] : old.cmd ?? [];
  const effCmd = spec.cmd ?? oldCmd;
  const newEp = newImage.entrypoint ?? [];
  const newCmd = newImage.cmd ?? [];

  // The container's own entrypoint: one its spec sets that is not the old image's (an explicit
  // empty one too: the user cleared the image's).
  const ownEp = epGiven && (spec.entrypoint!.length === 0 || !same(spec.entrypoint!, old.entrypoint ?? []));
  const fromImage = changes.entrypoint == null && !ownEp;
  const ep = changes.entrypoint ?? (ownEp ? spec.entrypoint! : newEp);
  // The image's cmd goes with the image's entrypoint only (Docker drops it under any other).
  const cmd = changes.cmd ?? (keepOwn(effCmd, oldCmd) ? effCmd : fromImage ? newCmd : []);

  const next: ContainerSpec = { ...spec, image: m.newImageName };
  delete next.entrypoint;
  delete next.cmd;
  // Said in the spec only where it differs from what the new image gives (resolveArgs's rule).
  if (!fromImage) {
    next.entrypoint = ep;
    next.cmd = cmd;
  } else if (!same(cmd, newCmd)) {
    next.cmd = cmd;
  }

  const oldEnv = new Map(old.env.map((e) => [envKey(e), e]));
  const ownEnv = (spec.env ?? []).filter((e) => oldEnv.get(envKey(e)) !== e);
  const env = mergeEnv(ownEnv, changes.env ?? []);
  if (env.length) next.env = env;
  else delete next.env;

  const ownLabels = Object.fromEntries(Object.entries(spec.labels ?? {}).filter(([k, v]) => old.labels[k] !== v));
  const labels = { ...newImage.labels, ...ownLabels, ...changes.labels };
  if (Object.keys(labels).length) next.labels = labels;
  else delete next.labels;

  if (changes.resources) next.resources = { ...spec.resources, ...changes.resources };

  const mounts = withImageVolumes(spec.mounts ?? [], m.containerId, newImage.volumes ?? [], m.newImageName, "refuse");
  if (mounts.length) next.mounts = mounts;
  return next;
}

/**
 * The volumes an image declares (VOLUME) that the mounts lack, added as anonymous volumes (named
 * after the container, removed with it). Where another kind of mount has that target: at create
 * it wins (Docker's rule); in an upgrade it is refused, since the new image's data would land
 * on the host path (or in memory) without anybody asking.
 */
export function withImageVolumes(mounts: readonly Mount[], containerId: string, volumes: readonly string[], imageName: string, onCollision: "keep" | "refuse"): Mount[] {
  const out = [...mounts];
  const targets = new Map(out.map((x) => [normTarget(x.target), x]));
  const names = new Set(out.map((x) => x.source));
  for (const v of volumes) {
    const t = normTarget(v);
    const has = targets.get(t);
    if (has?.type === "volume" || (has && onCollision === "keep")) continue;
    if (has) {
      throw invalid(`image ${imageName} declares a volume at ${t}, where the container has a ${has.type} mount${has.source ? ` of ${has.source}` : ""}: the upgrade would hide one of them`);
    }
    let i = out.length;
    while (names.has(anonVolumeName(containerId, i))) i++;
    const mount: Mount = { type: "volume", source: anonVolumeName(containerId, i), target: t };
    out.push(mount);
    targets.set(t, mount);
    names.add(mount.source);
  }
  return out;
}

/** What the owning node does next for a container with a saga in progress. */
export type UpgradeStep =
  /** Stop the process that runs (the old revision's, or the failed new one's), `stage`'s rootfs mounted first. */
  | { kind: "stop"; stage: Revision }
  /** Switch the host to this revision's rw layer and config (no process runs), then record it. */
  | { kind: "activate"; revision: Revision }
  /** Start the active revision. */
  | { kind: "start" }
  /** The new revision is up; look again at `untilMs` (or at its next exit or health change). */
  | { kind: "gate"; untilMs: number }
  /** The new revision failed: record why; the saga goes back. */
  | { kind: "fail"; reason: string }
  /** The saga's last event (its outcome). */
  | { kind: "finish"; event: NewEventOf<ContainerEvent> };

/** Pure: the saga's next step from the container's state and the time. Null: no saga. */
export function upgradeNext(c: ContainerState, nowMs: number): UpgradeStep | null {
  const u = c.upgrade;
  if (!u) return null;
  const back = u.failed !== null;
  const target = sagaTarget(u);
  const up = c.state === "running" || c.state === "paused";
  if (c.revision !== target.revision) {
    // The new revision's rw layer is a new dir (revision numbers are never reused); going back
    // finds the old one unchanged.
    if (up) return { kind: "stop", stage: target };
    return { kind: "activate", revision: target };
  }
  if (!u.wasRunning) return { kind: "finish", event: finish(c) };
  const gated = u.kind === "upgrade" && !back;
  if (!up) {
    if (u.runStartedAt === null) return { kind: "start" };
    if (gated) return { kind: "fail", reason: `the new revision exited with code ${u.runExit ?? -1} within its health gate` };
    return { kind: "finish", event: finish(c) };
  }
  if (gated && u.runStartedAt !== null) {
    if (c.health === "unhealthy") return { kind: "fail", reason: "the new revision turned unhealthy within its health gate" };
    const until = Date.parse(u.runStartedAt) + u.gateSec * 1000;
    if (nowMs < until) return { kind: "gate", untilMs: until };
  }
  return { kind: "finish", event: finish(c) };
}

/** The saga's outcome: settled on the new revision, or back on the old one (and why). */
export function finish(c: ContainerState, why?: string): NewEventOf<ContainerEvent> {
  const u = c.upgrade!;
  if (u.kind === "upgrade" && u.failed === null && !why) {
    return { type: "ContainerUpgraded", data: { fromImage: u.from.image, fromDigest: u.from.imageDigest, toImage: u.to.image, toDigest: u.to.imageDigest, revision: u.to.revision } };
  }
  const [back, left] = u.kind === "rollback" ? [u.to, u.from] : [u.from, u.to];
  const reason = [u.kind === "rollback" ? "requested" : u.failed, why].filter(Boolean).join("; ");
  return { type: "ContainerUpgradeRolledBack", data: { reason, revision: back.revision, image: back.image, imageDigest: back.imageDigest, fromRevision: left.revision } };
}

/** The revisions whose rw layers stay on the host once the saga's outcome is recorded. */
export function keptAfter(c: ContainerState): number[] {
  const u = c.upgrade!;
  if (u.kind === "rollback") return [u.to.revision];
  if (u.failed === null) return [u.to.revision, u.from.revision];
  return c.previous ? [u.from.revision, c.previous.revision] : [u.from.revision];
}

/** While a saga runs: its two revisions and the previous one. */
export function keptDuring(c: ContainerState): number[] {
  const u = c.upgrade!;
  return [u.from.revision, u.to.revision, ...(c.previous ? [c.previous.revision] : [])];
}
