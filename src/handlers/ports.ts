// The ports: everything the handlers need from the host, in one place (containerd's
// PlatformRuntime, podman's OCIRuntime). The handlers depend on these interfaces only; the wiring
// (src/wiring/host-adapter.ts) implements them with the runtime adapters, and unit tests of
// handlers may use small in-memory fakes. The runtime itself imports no handler code.
import type { ContainerState } from "../aggregates/container/state.js";
import type { PodState } from "../aggregates/pod/index.js";
import type { CheckpointOptions, Revision } from "../events/types.js";
import type { Readable } from "node:stream";
import type { DumpStats } from "../shared/host-facts.js";
import type { PortMapping, Resources } from "../shared/spec.js";
import type { ArchiveSource, ConsoleSession, ExecResult, ExecUser, ExitInfo, ImageRecord, RuncState, TtyProcess } from "../shared/host-facts.js";

/** What the executor asks of the host to turn a container's intents into outcomes. */
export interface HostOps {
  prepareAndStart(c: ContainerState, net: NetPlan): Promise<{ pid: number; startedAt: string; ip: string | null }>;
  /** Releases the container's bridge attachment (before its removal); the IP it had, or null. */
  detachNetwork(id: string): Promise<string | null>;
  /** `all`: every process of the container (runc kill --all: freeze, signal, thaw). */
  signal(id: string, signal: string, all?: boolean): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  readExit(id: string): Promise<ExitInfo | null>;
  waitExit(id: string, timeoutMs: number): Promise<ExitInfo | null>;
  isRunning(id: string): Promise<boolean>;
  /** runc's status (`running`, `paused`, `stopped`, …), or null when runc does not know it. */
  status(id: string): Promise<string | null>;
  cleanup(id: string): Promise<void>;
  /** Mounts a revision's rootfs beside the running one (so that the switch costs no more than a stop and a start). */
  stageRevision(id: string, revision: Revision): Promise<void>;
  /** A stopped container's next start runs this revision (its image, its rw layer). */
  activateRevision(id: string, revision: Revision): Promise<void>;
  /** Removes the rw layers of the container's other revisions. */
  pruneRevisions(id: string, keep: readonly number[]): Promise<void>;
  /** CRIU-dump a running container into checkpoint `checkpointId`'s local dir (with its rw layer and `meta`). Idempotent. */
  checkpoint(id: string, checkpointId: string, o: CheckpointOptions & { runStartedAt: string | null; volumes?: readonly string[] }, meta: unknown): Promise<{ stats: DumpStats | null }>;
  /** A pre-dump of a running container (memory only; it runs on), the parent of its next checkpoint in this run. */
  preDump(id: string, runStartedAt: string, o: CheckpointOptions): Promise<{ stats: DumpStats | null }>;
  /** The local checkpoint as one stream (for the archive store). */
  packCheckpoint(checkpointId: string): Readable;
  /** Fill the local checkpoint dir from an archive stream. */
  unpackCheckpoint(checkpointId: string, data: Readable): Promise<void>;
  /** The local checkpoint's archive for another daemon (a direct migration's source). */
  checkpointSource(checkpointId: string): ArchiveSource;
  /** Restore the checkpoint's process into this (stopped) container: its rw layer, then CRIU under conmon. A live one is answered as it is. */
  prepareAndRestore(c: ContainerState, net: NetPlan, checkpointId: string, o: { tcpEstablished: boolean; placeVolumes?: boolean }): Promise<{ pid: number; startedAt: string; ip: string | null; lazyPages?: boolean }>;
  removeCheckpointDir(checkpointId: string): Promise<void>;
  /** The volumes migration `checkpointId` put on this node: kept (it runs here) or removed (it does not). */
  settleVolumes(checkpointId: string, keep: boolean): Promise<void>;
  /** Volumes a migration put here and did not settle (a daemon killed in between). */
  volumeMoves(): Promise<{ name: string; checkpointId: string }[]>;
  /** Volumes a migration from here takes away, not settled yet. */
  leavingVolumes(): Promise<{ name: string; checkpointId: string; container: string }[]>;
  /** A leaving volume removed from here (it moved) or kept; its note goes either way. */
  settleLeavingVolume(name: string, remove: boolean): Promise<void>;
  /** The local checkpoint dirs, each with the container its meta names (null: none yet). */
  checkpointDirs(): Promise<{ checkpointId: string; container: string | null }[]>;
}

/** The checkpoint archives (the object store), as the executor and the services use them. */
export interface ArchivePort {
  put(id: string, data: Readable): Promise<{ sizeBytes: number; digest: string }>;
  get(id: string): Promise<{ data: Readable; verified: Promise<void> }>;
  remove(id: string): Promise<void>;
}

/** Archives straight from another node's daemon (a direct migration: archive-transfer.ts). */
export interface DirectArchivePort {
  /** `tcp: false`: NATS frames only, not the port the source offers. */
  /** The archive of `checkpointId` from `node`'s daemon into this host's checkpoint dir, its digest checked. */
  fetch(node: string, checkpointId: string, tcp?: boolean): Promise<void>;
}

/**
 * What the network of a start is: none/host need nothing; a bridge container gets its own sandbox
 * with the IP asked for (its static one, or the one it had) or the next free one not in `exclude`
 * (IPs the log gives to other containers of this node).
 */
export type NetPlan =
  | { kind: "plain" }
  | { kind: "bridge"; ip: string | null; exclude: ReadonlySet<string> }
  /** A pod member joins the pod's sandbox (made by its first member's start), under the pod's cgroup. */
  | {
      kind: "pod";
      pod: string;
      hostname: string;
      share: readonly ("net" | "ipc" | "uts")[];
      bridge: { ip: string | null; exclude: ReadonlySet<string>; ports: PortMapping[] } | null;
      resources: Resources | undefined;
    };

/** The node's network as the command handlers check requests against it. */
export interface NetworkPort {
  /** InvalidArgument when the IP is not a host address of the node's subnet (or its gateway). */
  checkIp(ip: string): void;
  /** IPs with a lease on this node (taken, whatever the log says). */
  leased(): Promise<ReadonlySet<string>>;
  /** Whether a process of the host listens on (or holds) this address and port. */
  hostPortFree(p: { hostPort: number; protocol?: "tcp" | "udp"; hostIp?: string }): Promise<boolean>;
}

/** What the pod service asks of the owning node's host. */
export interface PodHost {
  /** Releases the pod's sandbox (namespaces, attachment, lease) and its cgroup. Idempotent. */
  removePod(id: string): Promise<void>;
}

/** The host as recovery (the start-up pass) needs it. */
export interface RecoveryHost {
  list(): Promise<RuncState[]>;
  /** Ids of the containers with a bundle dir on this node. */
  bundles(): Promise<string[]>;
  readExit(id: string): Promise<ExitInfo | null>;
  conmonAlive(id: string): Promise<boolean>;
  imagePresent(digest: string): Promise<boolean>;
  cleanup(id: string): Promise<void>;
  /** Keys of the sandboxes on this node (pinned namespaces or bridge attachments). */
  sandboxKeys(): Promise<string[]>;
  /** Its netns is pinned and attached in this boot. */
  sandboxAttached(key: string): Promise<boolean>;
  releaseSandbox(key: string): Promise<void>;
}

/** What a command run in a container said and how it ended (runc exec): a probe's or an exec's. */
export type ProbeResult = ExecResult;

/** What the health monitor needs from the host. */
export interface HealthHost {
  exec(id: string, argv: readonly string[], opts: { timeoutMs: number; signal?: AbortSignal }): Promise<ProbeResult>;
  state(id: string): Promise<{ status: string } | null>;
}

/** The node's image store as the image service needs it. */
export interface ImageStorePort {
  import(source: string, name?: string): Promise<ImageRecord>;
  resolve(ref: string): Promise<ImageRecord | null>;
  remove(name: string): Promise<void>;
}

/** What the service asks of the host exec sessions (HostRuntime implements it). */
export interface ExecHost {
  /** `user[:group]` against the container's /etc/passwd and /etc/group; InvalidArgument if unknown. */
  resolveUser(id: string, user: string): Promise<ExecUser>;
  exec(id: string, argv: readonly string[], opts: ExecProcessOptions & { timeoutMs: number; maxOutput: number; signal?: AbortSignal }): Promise<ExecResult>;
  execTty(id: string, argv: readonly string[], opts: ExecProcessOptions & { cols: number; rows: number }): Promise<TtyProcess>;
}

export interface ExecProcessOptions {
  env?: readonly string[];
  user?: ExecUser;
  cwd?: string;
}

/** A client on a container's own terminal (HostRuntime implements it). */
export interface AttachHost {
  attach(id: string): Promise<ConsoleSession>;
}

export type { ConsoleSession, TtyProcess };

/**
 * A local copy whose container the log says is gone from this node (removed, or moved away): never
 * started offline again; deleted once the grace period from `since` is over.
 */
export interface CopyRetiring {
  reason: "removed" | "migrated";
  since: string;
  toNode?: string;
}

/** The node's local checkpoints (issue 11): sanitized copies of its critical containers, on its disk. */
export interface LocalCopyPort {
  /** Write (or replace) the copy of `c`, a container of this node (`pod`: its pod, if a member); returns when it was written. */
  write(c: ContainerState, pod: PodState | null, retiring?: CopyRetiring | null): Promise<string>;
  remove(id: string): Promise<void>;
  /** The copies on disk (valid ones), with when each was written, the container's version it holds and whether it is retiring. */
  list(): Promise<{ id: string; writtenAt: string; logSeq: number; retiring: CopyRetiring | null }[]>;
}
