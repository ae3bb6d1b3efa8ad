// Adapts the runtime to what the executor asks of the host.
import { BerthError, ErrorCode } from "../shared/errors.js";
import { fault } from "../fault.js";
import { existsSync } from "node:fs";
import type { HostOps, LocalCopyPort, NetPlan, NetworkPort, RecoveryHost } from "../handlers/ports.js";
import { LocalCheckpoints, localCopyOf } from "../runtime/local-checkpoints.js";
import type { Logger } from "../log.js";
import type { NetSetup } from "../shared/host-facts.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { HostRuntime } from "../runtime/host.js";
import { hostPortFree } from "../runtime/bridge-network.js";
import type { ImageStore } from "../runtime/images.js";

export function hostOps(rt: HostRuntime, images: ImageStore): HostOps {
  /** The image a container (or one of its revisions) runs, from this node's store. */
  const imageOf = async (r: { image: string; imageDigest: string }) => {
    const image = await images.resolve(r.imageDigest);
    if (!image) throw new BerthError(ErrorCode.RuntimeError, `image ${r.image} (${r.imageDigest}) is not in this node's image store`);
    return image;
  };
  /** The bundle for a start or a restore: its image, its network (bridge sandbox or pod), config.json. */
  const prepareFor = async (c: ContainerState, plan: NetPlan, mount = true): Promise<NetSetup | undefined> => {
    const image = await imageOf(c);
    let net: NetSetup | undefined;
    if (plan.kind === "bridge") {
      const sb = await rt.ensureSandbox(c.id, {
        kinds: ["net"],
        bridge: { ip: plan.ip, exclude: plan.exclude, ports: c.spec.network?.ports ?? [] },
      });
      net = { namespacePaths: sb.paths, ip: sb.ip };
    } else if (plan.kind === "pod") {
      await rt.ensurePodCgroup(plan.pod, plan.resources);
      const sb = await rt.ensureSandbox(plan.pod, { kinds: plan.share, hostname: plan.hostname, bridge: plan.bridge ?? undefined });
      net = { namespacePaths: sb.paths, ip: sb.ip, hostname: plan.hostname };
    }
    if (net) fault("after-attach");
    await rt.prepare({ id: c.id, name: c.name, spec: c.spec, image, net, pod: plan.kind === "pod" ? plan.pod : undefined, revision: c.revision, mount });
    return net;
  };
  return {
    async prepareAndStart(c: ContainerState, plan: NetPlan) {
      const net = await prepareFor(c, plan);
      const r = await rt.start(c.id);
      return { pid: r.pid, startedAt: r.startedAt, ip: net?.ip ?? null };
    },
    async prepareAndRestore(c, plan, checkpointId, o) {
      if (await rt.isLive(c.id)) {
        // Restored before the daemon died, not yet recorded: it is the restore's result.
        const st = await rt.state(c.id);
        return { pid: st!.pid, startedAt: st!.created, ip: c.ip };
      }
      await rt.checkCpu(checkpointId);
      // A migration's volumes before the bundle, which would make an empty one of a missing volume.
      if (o.placeVolumes) await rt.placeVolumes(checkpointId);
      // The bundle first (a new container has none yet), then its rw layer from the checkpoint.
      // Unmounted (a rootfs not mounted yet stays so): start() mounts it over the restored layer.
      const net = await prepareFor(c, plan, false);
      await rt.restoreRootfs(c.id, checkpointId);
      const r = await rt.start(c.id, rt.restoreFrom(checkpointId, o));
      return { pid: r.pid, startedAt: r.startedAt, ip: net?.ip ?? null, ...(r.lazyPages ? { lazyPages: true } : {}) };
    },
    checkpoint: (id, checkpointId, o, meta) => rt.checkpoint(id, checkpointId, o, meta),
    preDump: (id, runStartedAt, o) => rt.preDump(id, runStartedAt, o),
    packCheckpoint: (checkpointId) => rt.packCheckpoint(checkpointId),
    unpackCheckpoint: (checkpointId, data) => rt.unpackCheckpoint(checkpointId, data),
    checkpointSource: (checkpointId) => rt.checkpointSource(checkpointId),
    removeCheckpointDir: (checkpointId) => rt.removeCheckpointDir(checkpointId),
    settleVolumes: (checkpointId, keep) => rt.settleVolumes(checkpointId, keep),
    volumeMoves: () => rt.volumeMoves(),
    leavingVolumes: () => rt.leavingVolumes(),
    settleLeavingVolume: (name, remove) => rt.settleLeavingVolume(name, remove),
    checkpointDirs: () => rt.checkpointDirs(),
    detachNetwork: (id) => rt.detachNetwork(id),
    signal: (id, signal, all) => rt.signal(id, signal, all),
    pause: (id) => rt.pause(id),
    resume: (id) => rt.resume(id),
    readExit: (id) => rt.readExit(id),
    waitExit: (id, timeoutMs) => rt.waitExit(id, timeoutMs),
    async isRunning(id) {
      const s = await rt.state(id);
      return s !== null && s.status !== "stopped";
    },
    cleanup: (id) => rt.cleanup(id),
    stageRevision: async (id, r) => rt.stageRevision(id, r.revision, (await imageOf(r)).rootfs),
    activateRevision: async (id, r) => rt.activateRevision(id, r.revision, (await imageOf(r)).rootfs),
    pruneRevisions: (id, keep) => rt.pruneRevisions(id, keep),
    status: async (id) => (await rt.state(id))?.status ?? null,
  };
}

export function recoveryHost(rt: HostRuntime, images: ImageStore): RecoveryHost {
  return {
    list: () => rt.list(),
    bundles: () => rt.bundles(),
    readExit: (id) => rt.readExit(id),
    conmonAlive: (id) => rt.conmonAlive(id),
    async imagePresent(digest) {
      const img = await images.resolve(digest);
      return img !== null && existsSync(img.rootfs);
    },
    cleanup: (id) => rt.cleanup(id),
    sandboxKeys: () => rt.sandboxes.keys(),
    sandboxAttached: (key) => rt.sandboxes.attached(key),
    releaseSandbox: (key) => rt.sandboxes.remove(key),
  };
}

export function networkPort(rt: HostRuntime): NetworkPort {
  return {
    checkIp: (ip) => rt.network.checkIp(ip),
    leased: () => rt.network.leased(),
    hostPortFree,
  };
}

/** The node's local checkpoint store (runtime/local-checkpoints.ts) as the keeper uses it. */
export async function localCopyPort(dir: string, node: string, log?: Logger): Promise<LocalCopyPort> {
  const store = await LocalCheckpoints.open(dir, { log });
  return {
    write: async (c, pod, retiring) => {
      const writtenAt = new Date().toISOString();
      await store.write(localCopyOf(c, { node, pod, writtenAt, retiring }));
      return writtenAt;
    },
    remove: async (id) => void (await store.remove(id)),
    // A copy of an older form (a member's pod as a bare id, no createdAt) is given as of no
    // version, so the keeper writes it again in the current one.
    list: async () => (await store.list()).copies.filter((c) => c.node === node).map((c) => ({ id: c.id, writtenAt: c.writtenAt, logSeq: typeof c.pod === "string" || c.createdAt === undefined ? -1 : c.logSeq, retiring: c.retiring })),
  };
}
