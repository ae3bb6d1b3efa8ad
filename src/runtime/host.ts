// The daemon's one door to the host. Every method is a fact-reporting, idempotent action keyed by
// container id, so recovery can re-run any of them after a crash. No decisions here:
// whether to start, restart or remove is the handlers' business.
import { watch, type FSWatcher } from "node:fs";
import { join } from "node:path";
import { access, mkdir, readFile, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { RuntimeFailure, invalid, notFound } from "../shared/errors.js";
import { NAME_RE, hostnameFor, isAnonVolumeOf, networkMode } from "../shared/spec.js";
import { checkVolumeName } from "../shared/spec-rules.js";
import { BridgeNetwork } from "./bridge-network.js";
import { Sandboxes, type SandboxInfo, type SandboxRequest } from "./sandbox.js";
import { writeEtcFiles } from "./etc-files.js";
import { ensurePodCgroup, removePodCgroup } from "./pod-cgroup.js";
import type { Resources } from "../shared/spec.js";
import type { Logger } from "../log.js";
import { fault } from "../fault.js";
import { isConmonFor, processAlive, readPid, startConmon, type ConmonStarted } from "./conmon.js";
import { resolveTool, run, toolPaths } from "./exec.js";
import { validateMountSources } from "./mounts.js";
import { buildOciSpec } from "./oci-spec.js";
import { isMounted, mountOverlay, unmountOverlay, type OverlayDirs } from "./overlay.js";
import { type CheckpointPaths, checkId, CONTAINER_ID_RE, Paths } from "./paths.js";
import { Runc, type ExecOptions, type ExecResult, type ExecUser } from "./runc.js";
import type { ArchiveSink, ArchiveSource, ConsoleSession, ExitInfo, LogLine, PrepareInput, RuncState, StartResult } from "../shared/host-facts.js";
import writeFileAtomic from "write-file-atomic";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createWriteStream, existsSync } from "node:fs";
import type { LogPolicy } from "./log-files.js";
import { DEFAULT_LOG_POLICY, LogRotator } from "./log-rotator.js";
import { readLogLines, readLogs, type LogQuery } from "./logs.js";
import { execTty, type TtyExec, type TtyExecOptions } from "./exec-tty.js";
import { resolveUserIn } from "./users.js";
import { ConsoleHub } from "./console.js";
import {
  cpuinfoCheck, cpuinfoDump, criuError, dumpedPageBytes, dumpFinished, LAZY_PAGES_MIN_BYTES, lazyPagesSupported, memoryTracking, readDumpStats, runcCheckpoint, startLazyPages, type DumpStats, type LazyPages,
} from "./criu.js";
import { dirSink, dirSource } from "./dir-archive.js";
import type { RestoreFrom } from "./conmon.js";

/** tar of a layer or a volume as it is: xattrs, numeric owners. */
const TAR_KEEP = ["--xattrs", "--xattrs-include=*", "--numeric-owner"];

export interface DumpOptions {
  /** The migration's checkpoint, noted beside the volumes that leave with it. */
  checkpointId?: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  runStartedAt?: string | null;
  /** The volumes (by name) that go with the dump: a migration's, which moves them. */
  volumes?: readonly string[];
}

export interface HostRuntimeOptions {
  dataRoot: string;
  node: string;
  log: Logger;
  runcPath?: string;
  conmonPath?: string;
  /** Bound on conmon + `runc create`; default 30 s. */
  startTimeoutMs?: number;
  /** The log cap of containers whose spec has none; unset fields: DEFAULT_LOG_POLICY's. */
  logPolicy?: Partial<LogPolicy>;
  /** The bridge network's subnet (`--subnet`); default: a /24 of 10.89.0.0/16 chosen once. */
  subnet?: string;
}

const exists = (p: string) => access(p).then(() => true, () => false);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SIGNAL_RE = /^(?:SIG)?[A-Z][A-Z0-9+-]{1,12}$/;

/** A bundle file: written whole or not at all, not fsynced (every start writes it anew). */
const writeAtomic = (path: string, data: string) => writeFileAtomic(path, data, { fsync: false });

export class HostRuntime {
  readonly paths: Paths;
  readonly runc: Runc;
  readonly node: string;
  private readonly log: Logger;
  private readonly conmonPath: string;
  private readonly startTimeoutMs: number;
  private readonly logPolicy: LogPolicy;
  private readonly subnet?: string;
  private sandboxSet?: Sandboxes;
  private readonly consoles = new ConsoleHub();

  constructor(opts: HostRuntimeOptions) {
    if (!NAME_RE.test(opts.node)) throw invalid(`invalid node name '${opts.node}'`);
    this.paths = new Paths(opts.dataRoot);
    this.node = opts.node;
    this.log = opts.log;
    this.runc = new Runc({ root: this.paths.runcRoot, runcPath: opts.runcPath, log: opts.log });
    this.conmonPath = opts.conmonPath ?? toolPaths.conmon;
    this.startTimeoutMs = opts.startTimeoutMs ?? 30_000;
    this.logPolicy = {
      maxSizeBytes: opts.logPolicy?.maxSizeBytes ?? DEFAULT_LOG_POLICY.maxSizeBytes,
      maxFiles: opts.logPolicy?.maxFiles ?? DEFAULT_LOG_POLICY.maxFiles,
    };
    this.subnet = opts.subnet;
  }

  /** Pinned namespaces and bridge attachments (after init). */
  get sandboxes(): Sandboxes {
    if (!this.sandboxSet) throw new Error("HostRuntime.init() first");
    return this.sandboxSet;
  }

  get network(): BridgeNetwork {
    return this.sandboxes.network;
  }

  async init(): Promise<void> {
    const p = this.paths;
    for (const d of [p.runcRoot, p.exitDir, p.containersDir, p.volumesDir, p.imagesDir, p.checkpointsDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
    }
    await mkdir(p.socketDir, { recursive: true, mode: 0o700 });
    await mkdir(p.sandboxesDir, { recursive: true, mode: 0o700 });
    const network = await BridgeNetwork.open({ dataRoot: p.dataRoot, subnet: this.subnet, log: this.log });
    this.sandboxSet = new Sandboxes(p.sandboxesDir, network, this.log);
  }

  cgroupsPath(id: string, pod?: string): string {
    return pod ? `${this.podCgroup(pod)}/${checkId(id)}` : `/berth/${this.node}/${checkId(id)}`;
  }

  private podCgroup(pod: string): string {
    return `/berth/${this.node}/pod-${checkId(pod)}`;
  }

  /** A pod's cgroup (its members' parent, with the pod's limits). */
  ensurePodCgroup(pod: string, r: Resources | undefined): Promise<void> {
    return ensurePodCgroup(this.podCgroup(pod).slice(1), r);
  }

  /** Everything of a pod on this host: its sandbox and its cgroup (its members are gone). */
  async removePod(pod: string): Promise<void> {
    await this.sandboxes.remove(pod);
    await removePodCgroup(this.podCgroup(pod).slice(1));
  }

  /**
   * runc removes a container's own cgroups, not the `/berth/<node>` parent it made for them:
   * remove that when it is empty (on a clean stop), in every hierarchy. A non-empty one stays.
   */
  async releaseCgroups(): Promise<void> {
    const parents = (await cgroupRoots()).map((r) => join(r, "berth", this.node));
    // Leftover container cgroups first (runc can leave one behind when a killed process is slow to
    // go); a cgroup that still holds processes refuses rmdir, so running containers are safe.
    await Promise.all(
      parents.map(async (p) => {
        for (const c of await readdir(p, { withFileTypes: true }).catch(() => [])) {
          if (c.isDirectory()) await rmdir(join(p, c.name)).catch(() => undefined);
        }
        await rmdir(p).catch(() => undefined);
      }),
    );
  }

  /** The container's own cgroups, if runc left any (it normally removes them): empty ones only. */
  private async releaseContainerCgroups(id: string): Promise<void> {
    const rel = this.cgroupsPath(id).slice(1);
    await Promise.all((await cgroupRoots()).map((r) => rmdir(join(r, rel)).catch(() => undefined)));
  }

  /** Bundle dir with config.json and a mounted rootfs. Validates everything before touching the host. */
  async prepare({ id, name, spec, image, net, pod, revision = 0, mount = true }: PrepareInput): Promise<{ bundle: string }> {
    const cp = this.paths.container(id);
    const layer = this.paths.layer(id, revision);
    const hostNetworkFiles: string[] = [];
    const host = networkMode(spec) === "host";
    if (host) {
      for (const f of ["/etc/resolv.conf", "/etc/hosts"]) if (await exists(f)) hostNetworkFiles.push(f);
    }
    const hostname = net?.hostname ?? hostnameFor(spec, name);
    const input = {
      name, spec, image: image.config, rootfs: layer.rootfs, volumesDir: this.paths.volumesDir,
      cgroupsPath: this.cgroupsPath(id, pod), hostNetworkFiles, namespacePaths: net?.namespacePaths, hostname,
    };
    buildOciSpec(input); // every rule checked before the host is touched
    await validateMountSources(spec.mounts, this.paths.dataRoot);
    if (!(await exists(image.rootfs))) throw notFound(`image rootfs ${image.rootfs} is missing; import ${image.name} again`);

    for (const m of spec.mounts ?? []) {
      if (m.type === "volume") await mkdir(this.paths.volume(m.source!), { recursive: true, mode: 0o755 });
    }
    await mkdir(cp.dir, { recursive: true, mode: 0o700 });
    // The overlay's root dir takes the upper dir's mode: 0700 would lock non-root users out of "/".
    for (const d of [layer.upper, layer.work, layer.rootfs]) await mkdir(d, { recursive: true, mode: 0o755 });
    const overlay: OverlayDirs = { lower: image.rootfs, upper: layer.upper, work: layer.work, target: layer.rootfs };
    // Remembered so start() can remount after a host reboot without the image record at hand.
    await writeAtomic(cp.overlay, JSON.stringify(overlay));
    if (spec.log) await writeAtomic(cp.logPolicy, JSON.stringify(spec.log));
    // config.json has the terminal; whether its input is open is conmon's business only (start()).
    if (spec.stdin) await writeAtomic(stdinMarker(cp.dir), "");
    else await rm(stdinMarker(cp.dir), { force: true });
    if (mount) await mountOverlay(overlay, this.log);
    const etcFiles = host ? undefined : await writeEtcFiles(cp.dir, { hostname, ip: net?.ip ?? null, aliases: name !== hostname && NAME_RE.test(name) ? [name] : [] });
    await writeAtomic(cp.config, JSON.stringify(buildOciSpec({ ...input, etcFiles }), null, 2));
    return { bundle: cp.bundle };
  }

  /**
   * Start the container's process: a new one (runc create + start under conmon), or, with
   * `restore`, the one a checkpoint froze (conmon runs `runc restore` from its images).
   */
  async start(id: string, restore?: RestoreFrom): Promise<StartResult> {
    const cp = this.paths.container(id);
    if (!(await exists(cp.config))) throw notFound(`container ${id} has no bundle; prepare it first`);
    // A restart (the common case) finds a stopped container: tell that without exec'ing runc.
    const live = await this.runc.liveness(id);
    const st = live === "live" ? await this.runc.state(id) : live === "stopped" ? { status: "stopped" as const } : null;
    const conmonPid = await readPid(cp.conmonPidFile);
    const conmonUp = conmonPid !== null && (await isConmonFor(conmonPid, id));
    if (st && (st.status === "running" || st.status === "paused")) {
      return { pid: st.pid, startedAt: st.created, conmonPid: conmonPid ?? 0 };
    }
    if (st?.status === "created" && conmonUp) {
      // A crash between conmon's create and our runc start: finish the job.
      await this.runc.start(id);
      return { pid: st.pid, startedAt: new Date().toISOString(), conmonPid: conmonPid! };
    }
    // A big dump's memory comes in after the process starts, from CRIU's lazy-pages daemon
    // (criu.ts), begun now so that its own start-up overlaps what follows.
    let lazy: LazyPages | null = null;
    if (restore && (await lazyPagesSupported()) && (await dumpedPageBytes(restore.imagePath)) >= LAZY_PAGES_MIN_BYTES) {
      await mkdir(restore.workPath, { recursive: true, mode: 0o700 });
      await rm(join(restore.workPath, "lazy-pages.socket"), { force: true });
      lazy = startLazyPages(restore.imagePath, restore.workPath, this.log);
    }
    let started: ConmonStarted;
    let terminal = false;
    try {
      if (st) await this.runc.delete(id, true);
      // The previous run's conmon writes its exit file last; removing the file before it is done
      // would let a stale exit land after the new start.
      if (conmonUp) await this.stopConmon(id, conmonPid!, 5000);
      await Promise.all(
        [this.paths.exitFile(id), cp.oomFile, `${cp.persistDir}/exit`, cp.pidFile, cp.conmonPidFile, cp.runcLog]
          .map((f) => rm(f, { force: true })),
      );
      const overlay = await this.overlayOf(id);
      if (!overlay) throw notFound(`container ${id} has no rootfs; prepare it again`);
      if (!(await isMounted(overlay.target))) await mountOverlay(overlay, this.log);
      const config = await this.configOf(cp.config, id);
      terminal = config.terminal;
      const stdin = terminal && (await exists(stdinMarker(cp.dir)));
      if (lazy) {
        await lazy.ready.catch((err: unknown) => {
          this.log.warn({ err, id }, "restoring without lazy pages");
          lazy!.stop();
          lazy = null;
        });
      }
      started = await startConmon({
        conmonPath: this.conmonPath, runcPath: await resolveTool(this.runc.path), runtimeArgs: this.runc.globalArgs,
        id, name: config.name, bundle: cp.bundle, pidFile: cp.pidFile, conmonPidFile: cp.conmonPidFile,
        exitDir: this.paths.exitDir, socketDir: this.paths.socketDir, logPath: cp.log,
        persistDir: cp.persistDir, runcLog: cp.runcLog, timeoutMs: this.startTimeoutMs, log: this.log,
        terminal, stdin, restore: restore && lazy ? { ...restore, lazyPages: true } : restore,
      }).catch(async (err) => {
        if (!restore) throw err;
        // CRIU's own reason is in its log, not in conmon's words.
        const why = await criuError(join(restore.workPath, "restore.log"));
        throw why ? new RuntimeFailure("runc", ["restore", id], `criu restore failed: ${why}`, 1) : err;
      });
    } catch (err) {
      lazy?.stop();
      throw err;
    }
    if (restore) {
      const startedAt = new Date().toISOString();
      this.log.debug({ id, pid: started.pid, lazyPages: !!lazy }, "container restored");
      // The checkpoint's files stay until the daemon has handed every page over.
      if (lazy) fault("lazy-restoring");
      const code = lazy ? await lazy.done : 0;
      if (code !== 0) this.log.error({ id, code, why: await criuError(join(restore.workPath, "lazy-pages.log")) }, "criu lazy-pages failed after the restore");
      return { pid: started.pid, startedAt, conmonPid: started.conmonPid, ...(lazy ? { lazyPages: true } : {}) };
    }
    // The process waits for `runc start`: a client connected now loses none of its output.
    // Without it the container still runs; a client then misses what came before it attached.
    if (terminal) await this.consoles.hold(id, this.paths.attachSocket(id), cp.ctlFifo).catch((err) => this.log.warn({ err, id }, "cannot hold the terminal's first output"));
    await this.runc.start(id);
    const startedAt = new Date().toISOString();
    this.log.debug({ id, pid: started.pid, conmonPid: started.conmonPid }, "container started");
    return { pid: started.pid, startedAt, conmonPid: started.conmonPid };
  }

  /** The overlay its rootfs is made of (prepare wrote it; `lower` alone: a bundle from before revisions). */
  private async overlayOf(id: string): Promise<OverlayDirs | null> {
    const cp = this.paths.container(id);
    const o = await readFile(cp.overlay, "utf8").then((t) => JSON.parse(t) as OverlayDirs, () => null);
    if (o) return o;
    const lower = (await readFile(`${cp.dir}/lower`, "utf8").catch(() => "")).trim();
    return lower ? { lower, upper: cp.upper, work: cp.work, target: cp.rootfs } : null;
  }

  /** The rootfs mount points of all its revisions that exist on the host. */
  private async rootfsMounts(id: string): Promise<string[]> {
    const cp = this.paths.container(id);
    const revs = (await readdir(cp.dir).catch(() => [] as string[])).filter((n) => /^rev-\d+$/.test(n));
    return [cp.rootfs, ...revs.map((n) => join(cp.dir, n, "rootfs"))];
  }

  /**
   * Mount a revision's rootfs (its rw layer over `lowerRootfs`) at its own mount point, while the
   * container may still run another one: an upgrade's downtime is then a stop and a start. Idempotent.
   */
  async stageRevision(id: string, revision: number, lowerRootfs: string): Promise<void> {
    const layer = this.paths.layer(id, revision);
    for (const d of [layer.upper, layer.work, layer.rootfs]) await mkdir(d, { recursive: true, mode: 0o755 });
    await mountOverlay({ lower: lowerRootfs, upper: layer.upper, work: layer.work, target: layer.rootfs }, this.log);
  }

  /**
   * Switch a stopped container to a revision: its next start runs on that revision's rootfs (staged
   * here if it is not yet), and the other revisions' rootfs are unmounted. Idempotent.
   */
  async activateRevision(id: string, revision: number, lowerRootfs: string): Promise<void> {
    const cp = this.paths.container(id);
    // Read from runc's state file, as start() does: no runc exec in the upgrade's downtime.
    const live = await this.runc.liveness(id);
    if (live === "live") throw new RuntimeFailure("runc", ["state", id], `container ${id} runs: a revision is switched only while it is stopped`, undefined);
    if (live === "stopped") await this.runc.delete(id, true);
    await this.stageRevision(id, revision, lowerRootfs);
    const layer = this.paths.layer(id, revision);
    await writeAtomic(cp.overlay, JSON.stringify({ lower: lowerRootfs, upper: layer.upper, work: layer.work, target: layer.rootfs }));
    // The other revisions' rootfs are unmounted by pruneRevisions, once the new one runs.
  }

  /**
   * Dump a running container with CRIU into the checkpoint's dir, with its rw layer as a tar
   * beside the images. Without `leaveRunning` the container's process is gone afterwards.
   */
  async checkpoint(id: string, checkpointId: string, o: DumpOptions, meta: unknown): Promise<{ stats: DumpStats | null }> {
    const k = this.paths.checkpoint(checkpointId);
    if (!(await exists(k.dumped))) {
      // A container left running is frozen from before the dump until its rw layer is in the tar:
      // otherwise it writes on between CRIU's record of its files and the tar, and the restore
      // fails on a size that no longer matches ("File tmp/n has bad size 2 (expect 0)"). One
      // already paused stays as it is; the marker makes a retry after a crash thaw what we froze
      // (and freeze it, if the crash came between the marker and the pause).
      if (o.leaveRunning && (await this.runc.state(id))?.status === "running") {
        await mkdir(k.dir, { recursive: true, mode: 0o700 });
        await writeAtomic(k.frozen, "");
        await this.runc.pause(id);
      }
      try {
        await this.dump(id, k, o, meta);
      } finally {
        if (await exists(k.frozen)) {
          if ((await this.runc.state(id))?.status === "paused") await this.runc.resume(id);
          await rm(k.frozen, { force: true });
        }
      }
    }
    // CRIU writes its stats-dump into runc's work path.
    return { stats: (await readDumpStats(k.work)) ?? (await readDumpStats(k.images)) };
  }

  private async dump(id: string, k: CheckpointPaths, o: DumpOptions, meta: unknown): Promise<void> {
    // A dump the daemon died during may have finished on its own (runc and CRIU outlive us).
    if (!(await dumpFinished(k.work))) {
      for (const d of [k.images, k.work, k.rootfsDiff, k.meta, k.volumes]) await rm(d, { recursive: true, force: true });
      await mkdir(k.images, { recursive: true, mode: 0o700 });
      await mkdir(k.work, { recursive: true, mode: 0o700 });
      // This run's pre-dump becomes the checkpoint's parent (kept inside its dir, so the archive holds both).
      const pre = this.paths.preDump(id);
      const run = (await readFile(pre.run, "utf8").catch(() => null))?.trim();
      if (run && run === o.runStartedAt && (await dumpFinished(pre.work))) await rename(pre.images, k.parent);
      await rm(pre.dir, { recursive: true, force: true });
      const parentPath = (await exists(k.parent)) ? "../parent" : undefined;
      await runcCheckpoint(this.runc.path, this.runc.globalArgs, checkId(id), { imagePath: k.images, workPath: k.work, ...o, parentPath }, this.log);
    }
    const overlay = await this.overlayOf(id);
    if (!overlay) throw notFound(`container ${id} has no rootfs`);
    // The rw layer, and beside it the CPU it was made on (for the check before a restore): after
    // the dump, so a migration's downtime (and a leave-running one's frozen time), hence together.
    // A migration's volumes too: the process is gone (a dump that leaves it running moves none).
    // Each is noted as leaving, so that whatever dies, the source's copy goes once it runs there.
    const volumes = o.leaveRunning ? [] : (o.volumes ?? []);
    await rm(k.volumes, { recursive: true, force: true });
    if (volumes.length) {
      await mkdir(k.volumes, { recursive: true, mode: 0o700 });
      await mkdir(this.paths.volumeMovesOutDir, { recursive: true, mode: 0o700 });
      for (const name of volumes) await writeAtomic(join(this.paths.volumeMovesOutDir, checkVolumeName(name)), `${o.checkpointId ?? ""} ${id}`);
    }
    await Promise.all([
      run(toolPaths.tar, [...TAR_KEEP, "-C", overlay.upper, "-cf", k.rootfsDiff, "."], { timeoutMs: 600_000, log: this.log, toolName: "tar" }),
      cpuinfoDump(k.images, this.log),
      ...volumes.map(async (name) => {
        const dir = this.paths.volume(name);
        await mkdir(dir, { recursive: true, mode: 0o755 });
        await run(toolPaths.tar, [...TAR_KEEP, "-C", dir, "-cf", join(k.volumes, `${name}.tar`), "."], { timeoutMs: 600_000, log: this.log, toolName: "tar" });
      }),
    ]);
    await writeAtomic(k.meta, JSON.stringify(meta));
    await writeAtomic(k.dumped, "");
  }

  /**
   * A pre-dump of a running container (CRIU's memory only, it runs on): the parent of its next
   * checkpoint, which then freezes it for less time. A second one replaces the first. Kept for
   * this run of the container only (`runStartedAt`).
   */
  async preDump(id: string, runStartedAt: string, o: { tcpEstablished?: boolean; fileLocks?: boolean }): Promise<{ stats: DumpStats | null }> {
    const pre = this.paths.preDump(id);
    await rm(pre.dir, { recursive: true, force: true });
    await mkdir(pre.images, { recursive: true, mode: 0o700 });
    await mkdir(pre.work, { recursive: true, mode: 0o700 });
    try {
      await runcCheckpoint(this.runc.path, this.runc.globalArgs, checkId(id), { imagePath: pre.images, workPath: pre.work, preDump: true, ...o }, this.log);
    } catch (err) {
      await rm(pre.dir, { recursive: true, force: true });
      // runc says only "CRIU is missing features": name the one a pre-dump needs.
      if (!(await memoryTracking())) {
        throw new RuntimeFailure("runc", ["checkpoint", "--pre-dump", id], "pre-dump needs the kernel's memory dirty tracking (CONFIG_MEM_SOFT_DIRTY; `criu check --feature mem_dirty_track` fails on this host): checkpoint without it", 1);
      }
      throw err;
    }
    await writeAtomic(pre.run, runStartedAt);
    return { stats: (await readDumpStats(pre.work)) ?? (await readDumpStats(pre.images)) };
  }

  /** The members of a checkpoint's dir that its archive holds: images, its pre-dump parent if any, rootfs diff, meta.json. */
  private archiveParts(checkpointId: string): string[] {
    const k = this.paths.checkpoint(checkpointId);
    return ["checkpoint", ...(existsSync(k.parent) ? ["parent"] : []), "rootfs-diff.tar", "meta.json", ...(existsSync(k.volumes) ? ["volumes"] : [])];
  }

  /** The checkpoint's dir as one tar stream (archiveParts), for the object store. */
  packCheckpoint(checkpointId: string): Readable {
    return this.checkpointSource(checkpointId).stream();
  }

  /** The checkpoint's archive for another daemon (archive-transfer.ts): as a stream, by tar into a socket, and the digest of its files. */
  checkpointSource(checkpointId: string): ArchiveSource {
    return dirSource(this.paths.checkpoint(checkpointId).dir, this.archiveParts(checkpointId));
  }

  /** Where an archive of the checkpoint goes: its dir, emptied first, filled by tar from a stream or a socket, its three parts there. */
  checkpointSink(checkpointId: string): ArchiveSink {
    const k = this.paths.checkpoint(checkpointId);
    return dirSink(k.dir, async () => {
      for (const f of [k.images, k.rootfsDiff, k.meta]) {
        if (!(await exists(f))) throw invalid(`not a berth checkpoint archive: ${f.slice(k.dir.length + 1)} is missing`);
      }
    });
  }

  /** Fill the checkpoint's dir from a stream made by packCheckpoint. */
  async unpackCheckpoint(checkpointId: string, data: Readable): Promise<void> {
    await this.checkpointSink(checkpointId).fromStream(data, new AbortController().signal);
  }

  /** Whether the container's process runs (from runc's state file, no exec). */
  async isLive(id: string): Promise<boolean> {
    return (await this.runc.liveness(checkId(id))) === "live";
  }

  /**
   * Put the checkpoint's rw layer in place of the container's (the active revision's upper dir,
   * emptied first), with its rootfs unmounted meanwhile; the next start mounts it again.
   */
  async restoreRootfs(id: string, checkpointId: string): Promise<void> {
    const k = this.paths.checkpoint(checkpointId);
    const overlay = await this.overlayOf(id);
    if (!overlay) throw notFound(`container ${id} has no rootfs`);
    const live = await this.runc.liveness(id);
    if (live === "live") throw invalid(`container ${id} runs: stop it before restoring a checkpoint into it`);
    if (live === "stopped") await this.runc.delete(id, true);
    await unmountOverlay(overlay.target, this.log);
    await rm(overlay.upper, { recursive: true, force: true });
    await rm(overlay.work, { recursive: true, force: true });
    for (const d of [overlay.upper, overlay.work]) await mkdir(d, { recursive: true, mode: 0o755 });
    await run(toolPaths.tar, ["--xattrs", "--xattrs-include=*", "--numeric-owner", "--same-permissions", "-C", overlay.upper, "-xf", k.rootfsDiff], { timeoutMs: 600_000, log: this.log, toolName: "tar" });
  }

  /**
   * An archive from outside (`restore --import`): kept to a file first (at most `maxBytes`), its
   * members checked before anything is unpacked — only `checkpoint/…` (CRIU's files),
   * `rootfs-diff.tar` and `meta.json`, regular files and dirs, no absolute or `..` path; the rw
   * layer's tar inside likewise has no absolute or `..` names or link targets — then unpacked
   * into the checkpoint's dir. Returns its meta.json, parsed (the caller checks its shape).
   */
  async importCheckpoint(checkpointId: string, data: Readable, maxBytes: number): Promise<unknown> {
    const k = this.paths.checkpoint(checkpointId);
    await rm(k.dir, { recursive: true, force: true });
    await mkdir(k.dir, { recursive: true, mode: 0o700 });
    const file = join(k.dir, "import.tar");
    try {
      let n = 0;
      const cap = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          n += chunk.length;
          cb(n > maxBytes ? invalid(`the archive is larger than ${maxBytes} bytes`) : null, chunk);
        },
      });
      await pipeline(data, cap, createWriteStream(file, { mode: 0o600 }));
      const outer = await this.tarMembers(file, "the archive");
      for (const m of outer) {
        // CRIU's link to a pre-dump parent is the one link allowed, and only as CRIU makes it.
        if (m.name === "checkpoint/parent" && m.type === "l" && m.target === "../parent") continue;
        if (!/^((checkpoint|parent)(\/[^/]+)*\/?|rootfs-diff\.tar|meta\.json)$/.test(m.name) || !"-d".includes(m.type)) {
          throw invalid(`not a berth checkpoint archive: it holds '${m.name.slice(0, 200)}'${"-d".includes(m.type) ? "" : ` (type ${m.type})`}`);
        }
      }
      await run(toolPaths.tar, ["--numeric-owner", "-C", k.dir, "-xf", file], { timeoutMs: 600_000, log: this.log, toolName: "tar" });
      for (const f of [k.images, k.rootfsDiff, k.meta]) {
        if (!(await exists(f))) throw invalid(`not a berth checkpoint archive: ${f.slice(k.dir.length + 1)} is missing`);
      }
      await this.tarMembers(k.rootfsDiff, "its rw layer");
      await writeAtomic(k.dumped, "");
      return JSON.parse(await readFile(k.meta, "utf8"));
    } catch (err) {
      await rm(k.dir, { recursive: true, force: true });
      if (err instanceof SyntaxError) throw invalid("not a berth checkpoint archive: meta.json is not JSON");
      throw err;
    } finally {
      await rm(file, { force: true });
    }
  }

  /** A tar's members (type char and name, link target), refusing absolute or `..` names and targets. */
  private async tarMembers(file: string, what: string): Promise<{ type: string; name: string; target?: string }[]> {
    let listing: string;
    try {
      listing = (await run(toolPaths.tar, ["--numeric-owner", "--quoting-style=escape", "-tvf", file], { timeoutMs: 600_000, log: this.log, toolName: "tar" })).stdout;
    } catch {
      throw invalid(`not a berth checkpoint archive: ${what} is not a tar file`);
    }
    const out: { type: string; name: string; target?: string }[] = [];
    for (const line of listing.split("\n")) {
      if (!line) continue;
      // `drwxr-xr-x 0/0 0 2026-12-02 01:02 name[ -> target| link to target]`
      const m = /^(\S)\S*\s+\S+\s+\S+\s+\S+\s+\S+\s+(.*)$/.exec(line);
      if (!m) throw invalid(`not a berth checkpoint archive: ${what} has an entry tar cannot list`);
      const [name, target] = m[2].split(/ -> | link to /);
      for (const p of [name, target].filter((x): x is string => x !== undefined)) {
        if (p.startsWith("/") || p.split("/").includes("..")) {
          // A symlink's target is read where it is used: inside the container, or CRIU's parent link.
          if (p === target && m[1] === "l") continue;
          throw invalid(`not a berth checkpoint archive: ${what} holds a path that leaves its dir ('${p.slice(0, 200)}')`);
        }
      }
      out.push({ type: m[1], name: name.replace(/^\.\//, ""), ...(target !== undefined ? { target } : {}) });
    }
    return out;
  }

  /** Refuses (RuntimeError, CRIU's words) a checkpoint made on a CPU with features this one lacks. */
  checkCpu(checkpointId: string): Promise<void> {
    return cpuinfoCheck(this.paths.checkpoint(checkpointId).images, this.log);
  }

  /**
   * A migration's volumes into this node's volumes dir, before the restore binds them. A volume
   * of that name with data in it here is refused (a migration never overwrites another's data),
   * unless this migration put it there (a retry after a crash: a marker in volume-moves says so).
   * Each volume is unpacked beside and renamed into place, so a volume is whole or absent.
   */
  async placeVolumes(checkpointId: string): Promise<string[]> {
    const k = this.paths.checkpoint(checkpointId);
    const names = (await readdir(k.volumes).catch(() => [] as string[])).filter((f) => f.endsWith(".tar")).map((f) => f.slice(0, -4));
    if (!names.length) return [];
    await mkdir(this.paths.volumeMovesDir, { recursive: true, mode: 0o700 });
    for (const name of names) {
      const dest = this.paths.volume(name);
      const marker = join(this.paths.volumeMovesDir, name);
      const ours = (await readFile(marker, "utf8").catch(() => ""))?.trim() === checkpointId;
      if (!ours && (await readdir(dest).catch(() => [])).length > 0) {
        throw new RuntimeFailure("berth", ["migrate"], `volume '${name}' already exists on this node with data in it: a migration does not overwrite it (remove it here first)`, 1);
      }
      await writeAtomic(marker, checkpointId);
      const incoming = join(k.dir, "volume-incoming", name);
      await rm(incoming, { recursive: true, force: true });
      await mkdir(incoming, { recursive: true, mode: 0o755 });
      await run(toolPaths.tar, [...TAR_KEEP, "--same-permissions", "-C", incoming, "-xf", join(k.volumes, `${name}.tar`)], { timeoutMs: 600_000, log: this.log, toolName: "tar" });
      await rm(dest, { recursive: true, force: true });
      await rename(incoming, dest);
    }
    return names;
  }

  /** The volumes migration `checkpointId` put here: `keep` them (it ran here) or remove them (it did not). */
  async settleVolumes(checkpointId: string, keep: boolean): Promise<void> {
    for (const { name, checkpointId: by } of await this.volumeMoves()) {
      if (by !== checkpointId) continue;
      if (!keep) await rm(this.paths.volume(name), { recursive: true, force: true });
      await rm(join(this.paths.volumeMovesDir, name), { force: true });
    }
  }

  /** Volumes a migration put here and has not settled yet (a daemon killed in between). */
  async volumeMoves(): Promise<{ name: string; checkpointId: string }[]> {
    return (await volumeMarkers(this.paths.volumeMovesDir)).flatMap(({ name, text }) => (text ? [{ name, checkpointId: text }] : []));
  }

  /** Volumes a migration from here takes away, not settled yet: by name, with the migration's checkpoint and container. */
  async leavingVolumes(): Promise<{ name: string; checkpointId: string; container: string }[]> {
    return (await volumeMarkers(this.paths.volumeMovesOutDir)).flatMap(({ name, text }) => {
      const [checkpointId, container] = text.split(" ");
      return checkpointId && container ? [{ name, checkpointId, container }] : [];
    });
  }

  /** A leaving volume settled: removed from here (`remove`: it moved) or kept; its note goes either way. */
  async settleLeavingVolume(name: string, remove: boolean): Promise<void> {
    if (remove) await rm(this.paths.volume(name), { recursive: true, force: true });
    await rm(join(this.paths.volumeMovesOutDir, name), { force: true });
  }

  /** What a restore from this checkpoint hands conmon. */
  restoreFrom(checkpointId: string, o: { tcpEstablished?: boolean; fileLocks?: boolean }): RestoreFrom {
    const k = this.paths.checkpoint(checkpointId);
    return { imagePath: k.images, workPath: k.restoreWork, tcpEstablished: o.tcpEstablished, fileLocks: o.fileLocks };
  }

  async removeCheckpointDir(checkpointId: string): Promise<void> {
    await rm(this.paths.checkpoint(checkpointId).dir, { recursive: true, force: true });
  }

  /** The local checkpoint dirs (pre-dumps aside), each with the container its meta.json names (null: not written yet). */
  async checkpointDirs(): Promise<{ checkpointId: string; container: string | null }[]> {
    const names = await readdir(this.paths.checkpointsDir).catch(() => [] as string[]);
    const out: { checkpointId: string; container: string | null }[] = [];
    for (const name of names) {
      if (name.startsWith("predump-") || !CONTAINER_ID_RE.test(name)) continue;
      const meta = await readFile(this.paths.checkpoint(name).meta, "utf8").then((t) => JSON.parse(t) as { container?: unknown }, () => null);
      out.push({ checkpointId: name, container: typeof meta?.container === "string" ? meta.container : null });
    }
    return out;
  }

  /**
   * Removes the rw layers of every revision but `keep` (the active one is among them), and
   * unmounts the rootfs of every revision but the active one.
   */
  async pruneRevisions(id: string, keep: readonly number[]): Promise<void> {
    const cp = this.paths.container(id);
    const active = (await this.overlayOf(id))?.target;
    for (const m of await this.rootfsMounts(id)) if (m !== active) await unmountOverlay(m, this.log);
    for (const name of await readdir(cp.dir).catch(() => [] as string[])) {
      const m = /^rev-(\d+)$/.exec(name);
      if (!m || keep.includes(Number(m[1]))) continue;
      await unmountOverlay(join(cp.dir, name, "rootfs"), this.log);
      await rm(join(cp.dir, name), { recursive: true, force: true });
    }
    if (!keep.includes(0)) {
      const l0 = this.paths.layer(id, 0);
      await unmountOverlay(l0.rootfs, this.log);
      await Promise.all([rm(l0.upper, { recursive: true, force: true }), rm(l0.work, { recursive: true, force: true })]);
    }
  }

  private async configOf(config: string, id: string): Promise<{ name: string; terminal: boolean }> {
    const oci = JSON.parse(await readFile(config, "utf8")) as { hostname?: string; process?: { terminal?: boolean } };
    return { name: oci.hostname || id, terminal: oci.process?.terminal === true };
  }

  /** A client of a running container's terminal (console.ts); the first of a run gets its start. */
  attach(id: string): Promise<ConsoleSession> {
    return this.consoles.attach(checkId(id), this.paths.attachSocket(id), this.paths.container(id).ctlFifo);
  }

  /** Signal names (SIGTERM, TERM) or numbers. A container that is gone or stopped already is no
   *  error: the signal's purpose is met (use `runc.kill` to learn whether it was delivered). */
  async signal(id: string, signal: string | number, all = false): Promise<void> {
    checkId(id);
    const sig = typeof signal === "number" ? signal : signal.trim().toUpperCase();
    if (typeof sig === "number" ? !(Number.isInteger(sig) && sig >= 1 && sig <= 64) : !(SIGNAL_RE.test(sig) || /^\d{1,2}$/.test(sig))) {
      throw invalid(`invalid signal '${signal}'`);
    }
    const delivered = await this.runc.kill(id, sig, all);
    if (!delivered) this.log.debug({ id, signal }, "nothing to signal");
  }

  pause(id: string): Promise<void> { return this.runc.pause(checkId(id)); }
  resume(id: string): Promise<void> { return this.runc.resume(checkId(id)); }
  state(id: string): Promise<RuncState | null> { return this.runc.state(checkId(id)); }
  list(): Promise<RuncState[]> { return this.runc.list(); }

  /** Ids of the containers with a dir (bundle, layers) in this data root. */
  async bundles(): Promise<string[]> {
    return (await readdir(this.paths.containersDir).catch(() => [] as string[])).filter((n) => CONTAINER_ID_RE.test(n));
  }
  hasBundle(id: string): Promise<boolean> { return exists(this.paths.container(id).config); }
  /** Run a command in a running container (runc exec, no tty): exit code and output, bounded in time. */
  exec(id: string, argv: readonly string[], opts: ExecOptions): Promise<ExecResult> { return this.runc.exec(checkId(id), argv, opts); }
  /** The same on a terminal the daemon makes (runc exec --tty in the foreground). */
  execTty(id: string, argv: readonly string[], opts: TtyExecOptions): Promise<TtyExec> { return execTty(this.runc, checkId(id), argv, opts); }
  /** `user[:group]` → ids, names looked up in the container's own /etc/passwd and /etc/group. */
  async resolveUser(id: string, user: string): Promise<ExecUser> {
    return resolveUserIn((await this.overlayOf(checkId(id)))?.target ?? this.paths.container(id).rootfs, user);
  }

  async readExit(id: string): Promise<ExitInfo | null> {
    const file = this.paths.exitFile(id);
    let text: string;
    let mtime: Date;
    try {
      [text, { mtime }] = await Promise.all([readFile(file, "utf8"), stat(file)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    const exitCode = Number.parseInt(text.trim(), 10);
    // conmon writes the file atomically (g_file_set_contents); junk means someone else wrote it.
    if (!Number.isInteger(exitCode)) return null;
    const oomKilled = await exists(this.paths.container(id).oomFile);
    return { exitCode, oomKilled, exitedAt: mtime.toISOString() };
  }

  async waitExit(id: string, timeoutMs: number): Promise<ExitInfo | null> {
    checkId(id);
    const deadline = Date.now() + timeoutMs;
    let wake: () => void = () => undefined;
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.paths.exitDir, (_ev, f) => { if (f === id) wake(); });
    } catch { /* polling alone then */ }
    try {
      for (;;) {
        const info = await this.readExit(id);
        if (info || Date.now() >= deadline) return info;
        await new Promise<void>((r) => {
          const t = setTimeout(r, Math.min(250, Math.max(0, deadline - Date.now())));
          wake = () => { clearTimeout(t); r(); };
        });
      }
    } finally {
      watcher?.close();
    }
  }

  /** cb once per exit file appearance (id + mtime), also for ones already there. */
  watchExits(cb: (id: string, exit: ExitInfo) => void, opts: { pollMs?: number } = {}): () => void {
    const seen = new Map<string, number>();
    let stopped = false;
    const check = async (id: string) => {
      if (stopped || !CONTAINER_ID_RE.test(id)) return;
      const st = await stat(this.paths.exitFile(id)).catch(() => null);
      if (!st) { seen.delete(id); return; }
      if (seen.get(id) === st.mtimeMs) return;
      seen.set(id, st.mtimeMs);
      const info = await this.readExit(id).catch(() => null);
      if (!info || stopped) return;
      try { cb(id, info); } catch (err) { this.log.error({ err, id }, "exit callback failed"); }
    };
    const scan = async () => {
      const names = await readdir(this.paths.exitDir).catch(() => [] as string[]);
      for (const id of seen.keys()) if (!names.includes(id)) seen.delete(id);
      for (const id of names) await check(id);
    };
    let watcher: FSWatcher | undefined;
    try {
      watcher = watch(this.paths.exitDir, (_ev, f) => { if (f) void check(f.toString()); });
      watcher.on("error", (err) => this.log.warn({ err }, "exit dir watch failed; polling only"));
    } catch (err) {
      this.log.warn({ err }, "cannot watch exit dir; polling only");
    }
    // fs.watch can miss events (overflow, dir recreated): a slow poll catches the rest.
    const timer = setInterval(() => void scan(), opts.pollMs ?? 2000);
    timer.unref();
    void scan();
    return () => { stopped = true; clearInterval(timer); watcher?.close(); };
  }

  async conmonAlive(id: string): Promise<boolean> {
    const pid = await readPid(this.paths.container(id).conmonPidFile);
    return pid !== null && (await isConmonFor(pid, id));
  }

  /** Waits for this container's conmon to finish, then kills it if it would not. */
  private async stopConmon(id: string, pid: number, waitMs: number): Promise<void> {
    const deadline = Date.now() + waitMs;
    while (Date.now() < deadline && (await processAlive(pid))) await sleep(5);
    if (await isConmonFor(pid, id)) {
      this.log.warn({ id, pid }, "conmon did not exit, killing it");
      try { process.kill(pid, "SIGKILL"); } catch { /* gone */ }
      for (let i = 0; i < 50 && (await processAlive(pid)); i++) await sleep(20);
    }
  }

  /** A lone bridge container's sandbox (keyed by its id), or a pod's (keyed by the pod's id). */
  ensureSandbox(key: string, req: SandboxRequest): Promise<SandboxInfo> {
    return this.sandboxes.ensure(key, req);
  }

  /** Releases a sandbox's bridge attachment; the IP it had, or null when it had none. */
  detachNetwork(key: string): Promise<string | null> {
    return this.sandboxes.detach(key);
  }

  /** Removes everything the container left on the host. Idempotent. */
  async cleanup(id: string): Promise<void> {
    const cp = this.paths.container(id);
    this.consoles.release(id);
    const conmonPid = await readPid(cp.conmonPidFile);
    await this.runc.delete(id, true);
    if (conmonPid !== null && (await isConmonFor(conmonPid, id))) await this.stopConmon(id, conmonPid, 3000);
    for (const m of await this.rootfsMounts(id)) await unmountOverlay(m, this.log);
    await rm(cp.dir, { recursive: true, force: true });
    await rm(this.paths.exitFile(id), { force: true });
    await rm(this.paths.socketLink(id), { recursive: true, force: true });
    await this.releaseContainerCgroups(id);
    await this.sandboxes.remove(id);
    // Anonymous volumes belong to the container and go with it; named ones stay.
    for (const name of await readdir(this.paths.volumesDir).catch(() => [] as string[])) {
      if (isAnonVolumeOf(name, id)) await rm(join(this.paths.volumesDir, name), { recursive: true, force: true });
    }
  }

  /** The container's output as text lines, streamed (logs.ts); its log files are in its dir. */
  readLogs(id: string, q: LogQuery): Readable {
    return readLogs(this.paths.container(id).log, q);
  }

  /** Lines with their stream and time, in an array: small logs only (tests, tools). */
  async logs(id: string, opts: { tail?: number } = {}): Promise<LogLine[]> {
    const lines = await readLogLines(this.paths.container(id).log, opts);
    return lines.map((l) => ({ time: l.time, stream: l.stream, text: l.text.toString("utf8") }));
  }

  /** Keeps every container's log files within their cap until the returned stop is called. */
  rotateLogs(intervalMs?: number): () => void {
    return new LogRotator(this.paths, this.logPolicy, this.log).start(intervalMs);
  }
}

/** Present when the container's terminal takes input (spec.stdin): conmon gets -i. */
const stdinMarker = (dir: string) => join(dir, "stdin");

/** Every cgroup hierarchy root: /sys/fs/cgroup itself (v2) and each v1 controller below it. */
/** The marker files of a volume-moves dir: each volume's name and what its file says. */
async function volumeMarkers(dir: string): Promise<{ name: string; text: string }[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(names.map(async (name) => ({ name, text: (await readFile(join(dir, name), "utf8").catch(() => "")).trim() })));
}

async function cgroupRoots(): Promise<string[]> {
  const base = "/sys/fs/cgroup";
  return [base, ...(await readdir(base).catch(() => [] as string[])).map((d) => join(base, d))];
}
