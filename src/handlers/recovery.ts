// Recovery's runtime sync: compare what the log says about this node's containers with
// what the host says (runc, conmon, exit files, images), and turn the difference into actions.
// planRecovery is pure and returns actions as data; runRecovery gathers facts and applies them.
import { fault } from "../fault.js";
import type { Logger } from "../log.js";
import type { ContainerState } from "../aggregates/container/state.js";
import type { ReadModel } from "../projections/read-model.js";
import { nextState } from "../aggregates/container/transitions.js";
import type { ContainerCommands } from "../aggregates/container/index.js";
import type { Executor } from "./executor.js";
import type { ExitInfo, RuncState } from "../shared/host-facts.js";
import type { RecoveryHost } from "./ports.js";
import { networkMode } from "../shared/spec.js";

export interface HostFacts {
  /** runc's view of the containers in this node's runc root, by id. */
  runc: Map<string, RuncState>;
  /** Exit files present, by id. */
  exits: Map<string, ExitInfo>;
  /** Containers whose conmon process is alive. */
  conmonAlive: Set<string>;
  /** Containers whose image (record or unpacked rootfs) is gone from this node. */
  imageMissing: Set<string>;
  /** Sandboxes (pinned namespaces, bridge attachments) on this node, by key (a container's or pod's id). */
  sandboxes: Set<string>;
  /** Sandboxes whose netns is pinned and attached in this boot. */
  attached: Set<string>;
  /** Containers with a bundle dir (rootfs, config) on this node, by id. */
  bundles?: Set<string>;
}

export type RecoveryAction =
  /** Running as the log says: keep watching it. */
  | { kind: "adopt"; id: string }
  /** It exited while no daemon watched: record the exit from its exit file. */
  | { kind: "recordExit"; id: string }
  /** Its conmon is gone without an exit file (host reboot, conmon killed): exit -1 after a bounded wait. */
  | { kind: "vanished"; id: string }
  /** Its image is gone: it cannot be started again. */
  | { kind: "recoveryFailed"; id: string; reason: string }
  /** In runc's root but unknown to the log. */
  | { kind: "orphan"; id: string }
  /**
   * In runc's root, but the log says another node owns it and nothing is moving it here (a
   * migration that ended otherwise while this daemon was down): it must not run here too.
   */
  | { kind: "foreign"; id: string }
  /** A sandbox whose owner the log says is gone (a crash between its release and the record): release it. */
  | { kind: "releaseSandbox"; key: string }
  /** A running bridge container whose attachment is gone (reported; its next start makes it again). */
  | { kind: "networkMissing"; id: string };

/**
 * `extraOwners`: keys of sandboxes that belong to other aggregates (pods). `incoming`: another
 * node's containers that a migration is bringing to this one (kept on the host).
 */
export function planRecovery(all: Iterable<ContainerState>, node: string, facts: HostFacts, extraOwners?: Iterable<string>, incoming: (c: ContainerState) => boolean = () => false): RecoveryAction[] {
  const containers = [...all];
  const out: RecoveryAction[] = [];
  const known = new Set<string>();
  const mine: ContainerState[] = [];
  for (const c of containers) {
    if (c.node === node) mine.push(c);
    known.add(c.id);
    if (c.node !== node) {
      // In runc's root, or only its bundle and rootfs mount left (a migration's source killed
      // after the container's process was dumped and before its clean-up).
      const here = facts.runc.has(c.id) || facts.bundles?.has(c.id);
      if (here && c.migration?.toNode !== node && !incoming(c)) out.push({ kind: "foreign", id: c.id });
      continue;
    }
    const r = facts.runc.get(c.id);
    const live = r !== undefined && (r.status === "running" || r.status === "paused" || r.status === "created");
    switch (c.state) {
      case "running":
      case "paused":
        if (facts.exits.has(c.id)) out.push({ kind: "recordExit", id: c.id });
        else if (live || facts.conmonAlive.has(c.id)) out.push({ kind: "adopt", id: c.id });
        else out.push({ kind: "vanished", id: c.id });
        break;
      case "created":
      case "exited":
      case "restarting":
        if (facts.imageMissing.has(c.id)) {
          out.push({ kind: "recoveryFailed", id: c.id, reason: `image ${c.image} (${c.imageDigest}) is no longer on node ${node}` });
        }
        break;
      case "removing":
      case "dead":
        // A pending remove is finished by the executor like any pending intent; dead waits for the user.
        break;
    }
  }
  for (const id of facts.runc.keys()) if (!known.has(id)) out.push({ kind: "orphan", id });
  // A sandbox is kept for this node's containers and pods (and what migrates here), not for
  // another node's: one left by a migration that ended otherwise goes.
  const owners = new Set([...containers.filter((c) => c.node === node || c.migration?.toNode === node || incoming(c)).map((c) => c.id), ...(extraOwners ?? [])]);
  for (const key of facts.sandboxes) if (!owners.has(key)) out.push({ kind: "releaseSandbox", key });
  const adopted = new Set(out.filter((a) => a.kind === "adopt").map((a) => (a as { id: string }).id));
  for (const c of mine) {
    // A vanished one is restarted (or not) by its policy, which makes the attachment again.
    if (adopted.has(c.id) && networkMode(c.spec) === "bridge" && !facts.attached.has(c.id)) {
      out.push({ kind: "networkMissing", id: c.id });
    }
  }
  return out;
}


/**
 * Only what planRecovery reads: exit files and conmon for containers the log shows running or
 * paused, the image for stopped ones (once per digest: a node's containers share few images).
 */
export async function gatherFacts(host: RecoveryHost, own: ContainerState[]): Promise<HostFacts> {
  // `runc list` runs meanwhile; a failure is thrown below, where it is awaited.
  const listed = host.list();
  listed.catch(() => undefined);
  const exits = new Map<string, ExitInfo>();
  const conmonAlive = new Set<string>();
  const imageMissing = new Set<string>();
  const images = new Map<string, Promise<boolean>>();
  await Promise.all(
    own.map(async (c) => {
      if (c.state === "running" || c.state === "paused") {
        const [info, alive] = await Promise.all([host.readExit(c.id), host.conmonAlive(c.id)]);
        if (info) exits.set(c.id, info);
        if (alive) conmonAlive.add(c.id);
      } else if (c.state === "created" || c.state === "exited" || c.state === "restarting") {
        let present = images.get(c.imageDigest);
        if (!present) images.set(c.imageDigest, (present = host.imagePresent(c.imageDigest)));
        if (!(await present)) imageMissing.add(c.id);
      }
    }),
  );
  const runc = new Map((await listed).map((s) => [s.id, s] as const));
  const bundles = new Set(await host.bundles());
  const sandboxes = new Set(await host.sandboxKeys());
  const attached = new Set<string>();
  await Promise.all(
    own.filter((c) => sandboxes.has(c.id) && (c.state === "running" || c.state === "paused")).map(async (c) => {
      if (await host.sandboxAttached(c.id)) attached.add(c.id);
    }),
  );
  return { runc, exits, conmonAlive, imageMissing, sandboxes, attached, bundles };
}

/** How long a vanished container may still produce an exit file (conmon writes it last). */
export const VANISH_WAIT_MS = 1_000;

export interface RecoveryDeps {
  node: string;
  host: RecoveryHost;
  executor: Pick<Executor, "exited" | "vanished" | "idle" | "reconsider" | "discard">;
  commands: ContainerCommands;
  gcOrphans: boolean;
  log: Logger;
}

export interface RecoverySummary {
  containers: number;
  failed: number;
  orphans: string[];
  actions: RecoveryAction[];
}

/** Apply the plan. Exits land before anything else acts on them (they go through the executor's queues). */
export async function runRecovery(d: RecoveryDeps, model: ReadModel): Promise<RecoverySummary> {
  const own = [...model.containers.values()].filter((c) => c.node === d.node);
  const facts = await gatherFacts(d.host, own);
  fault("recovery");
  // A pod migrating here, or one that just did (its members' own records may still be to come).
  const incoming = (c: ContainerState) => {
    const pod = c.spec.pod ? model.pods.get(c.spec.pod) : undefined;
    return !!pod && (pod.node === d.node || pod.migration?.toNode === d.node);
  };
  const pods = [...model.pods.values()].filter((p) => p.node === d.node || p.migration?.toNode === d.node).map((p) => p.id);
  const actions = planRecovery([...model.containers.values()], d.node, facts, pods, incoming);
  const vanished = actions.filter((a) => a.kind === "vanished");
  if (vanished.length) await new Promise((r) => setTimeout(r, VANISH_WAIT_MS));
  let failed = 0;
  const orphans: string[] = [];
  for (const a of actions) {
    switch (a.kind) {
      case "adopt":
        break;
      case "recordExit":
        d.executor.exited(a.id);
        break;
      case "vanished":
        d.log.warn({ container: a.id }, "conmon vanished without an exit file; recording exit -1");
        d.executor.vanished(a.id);
        break;
      case "recoveryFailed": {
        failed++;
        const c = model.byId(a.id);
        if (c?.lastError === `restore: ${a.reason}`) break; // said already
        d.log.warn({ container: a.id, reason: a.reason }, "container cannot be recovered");
        await d.commands.appendDecided(
          a.id,
          (s) => (s && nextState(s.state, "ContainerRestoreFailed") ? [{ type: "ContainerRestoreFailed", data: { reason: a.reason } }] : []),
          { node: d.node, actor: `berth/${d.node}/recovery`, correlationId: a.id, causationId: null, requestId: `restore-failed:${a.id}:${c?.version}` },
          "restore-failed",
        );
        break;
      }
      case "orphan":
        orphans.push(a.id);
        d.log.warn({ container: a.id, gc: d.gcOrphans }, "container in runc's root is unknown to the log");
        if (d.gcOrphans) await d.host.cleanup(a.id);
        break;
      case "foreign":
        d.log.warn({ container: a.id, owner: model.byId(a.id)?.node }, "a container another node owns is on this host (a migration that ended otherwise): removing it here");
        await d.executor.discard(a.id);
        break;
      case "releaseSandbox":
        d.log.warn({ sandbox: a.key }, "releasing the sandbox of a container or pod the log says is gone");
        await d.host.releaseSandbox(a.key).catch((err) => d.log.error({ err, sandbox: a.key }, "could not release the sandbox"));
        break;
      case "networkMissing":
        d.log.warn({ container: a.id }, "running container's network attachment is gone; it is made again at its next start");
        break;
    }
  }
  await d.executor.idle();
  for (const c of model.containers.values()) if (c.node === d.node && c.state === "exited" && !c.pending) d.executor.reconsider(c.id);
  await d.executor.idle();
  return { containers: own.length, failed, orphans, actions };
}
