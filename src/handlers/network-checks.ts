// What a new container's network asks of its node, checked before anything is written: its IP is
// a host address of the node's subnet that no other container has or will have, and its published
// host ports are free (no other container publishes them, no host process holds them).
import { conflict } from "../shared/errors.js";
import { isIPv4 } from "../shared/ip.js";
import { portsOverlap } from "../shared/spec-rules.js";
import { networkMode, type ContainerSpec } from "../shared/spec.js";
import type { NetworkPort } from "./ports.js";
import type { ReadModel } from "../projections/read-model.js";

/** Whatever holds an IP or host ports on a node: a container, or a pod. */
export interface NetHolder {
  name: string;
  node: string;
  removed: boolean;
  ip: string | null;
  spec: { network?: ContainerSpec["network"] };
}

/** Every container and pod of the model, as holders of IPs and ports. */
export function holders(model: ReadModel): NetHolder[] {
  return [...model.containers.values(), ...[...model.pods.values()].map((p) => ({ ...p, name: `pod ${p.name}` }))];
}

/**
 * Throws InvalidArgument or Conflict; returns the keys to hold while the create is written (so
 * that two concurrent creates cannot both take one IP or host port).
 */
export async function checkNetworkRequest(
  spec: Pick<ContainerSpec, "network" | "node">,
  others: Iterable<NetHolder>,
  network: NetworkPort,
  reserving: ReadonlySet<string>,
): Promise<string[]> {
  if (networkMode(spec) !== "bridge") return [];
  const keys: string[] = [];
  const live = [...others].filter((o) => !o.removed && o.node === spec.node);
  const ip = spec.network?.ip;
  if (ip !== undefined && isIPv4(ip)) {
    network.checkIp(ip);
    const holder = live.find((o) => (o.spec.network?.ip ?? o.ip) === ip);
    if (holder) throw conflict(`IP ${ip} is in use by container ${holder.name}`);
    if (reserving.has(`ip:${ip}`) || (await network.leased()).has(ip)) throw conflict(`IP ${ip} is in use on this node`);
    keys.push(`ip:${ip}`);
  }
  for (const p of spec.network?.ports ?? []) {
    const proto = p.protocol ?? "tcp";
    const holder = live.find((o) => (o.spec.network?.ports ?? []).some((q) => portsOverlap(p, q)));
    if (holder) throw conflict(`host port ${p.hostPort}/${proto} is already published by container ${holder.name}`);
    const key = `port:${proto}:${p.hostPort}`;
    if (reserving.has(key)) throw conflict(`host port ${p.hostPort}/${proto} is being published by another request`);
    if (!(await network.hostPortFree(p))) throw conflict(`host port ${p.hostIp ?? "0.0.0.0"}:${p.hostPort}/${proto} is in use by a process on the host`);
    keys.push(key);
  }
  return keys;
}
