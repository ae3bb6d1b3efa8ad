// Adapts the runtime to what the executor asks of the host.
import { BerthError, ErrorCode } from "../shared/errors.js";
import { existsSync } from "node:fs";
import type { HostOps, RecoveryHost } from "../handlers/ports.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { HostRuntime } from "../runtime/host.js";
import type { ImageStore } from "../runtime/images.js";

export function hostOps(rt: HostRuntime, images: ImageStore): HostOps {
  return {
    async prepareAndStart(c: ContainerState) {
      const image = await images.resolve(c.imageDigest);
      if (!image) throw new BerthError(ErrorCode.RuntimeError, `image ${c.image} (${c.imageDigest}) is not in this node's image store`);
      await rt.prepare({ id: c.id, name: c.name, spec: c.spec, image });
      const r = await rt.start(c.id);
      return { pid: r.pid, startedAt: r.startedAt };
    },
    signal: (id, signal) => rt.signal(id, signal),
    pause: (id) => rt.pause(id),
    resume: (id) => rt.resume(id),
    readExit: (id) => rt.readExit(id),
    waitExit: (id, timeoutMs) => rt.waitExit(id, timeoutMs),
    async isRunning(id) {
      const s = await rt.state(id);
      return s !== null && s.status !== "stopped";
    },
    cleanup: (id) => rt.cleanup(id),
    status: async (id) => (await rt.state(id))?.status ?? null,
  };
}

export function recoveryHost(rt: HostRuntime, images: ImageStore): RecoveryHost {
  return {
    list: () => rt.list(),
    readExit: (id) => rt.readExit(id),
    conmonAlive: (id) => rt.conmonAlive(id),
    async imagePresent(digest) {
      const img = await images.resolve(digest);
      return img !== null && existsSync(img.rootfs);
    },
    cleanup: (id) => rt.cleanup(id),
  };
}
