// The data-root layout, in one place. Everything a daemon writes lives under its data root, so
// daemons with different data roots never share a runc root, an exit dir or a bundle. The one
// exception is conmon's attach-socket dir: unix socket paths are limited to 108 bytes, which a
// deep data root plus a 64-hex id would overflow, so it lives under /run with a short hash.
import { createHash } from "node:crypto";
import { resolve, join } from "node:path";
import { checkVolumeName } from "../shared/spec-rules.js";
import { invalid } from "../shared/errors.js";

/**
 * Container ids are file and dir names here; ≤ 64 chars keeps socket paths under 108 bytes, and
 * no '.' tells an exit file from conmon's temp file beside it (`<id>.XXXXXX`, then renamed).
 */
export const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;
/** sockaddr_un.sun_path is 108 bytes including the trailing NUL. */
export const UNIX_PATH_MAX = 107;

export function checkId(id: string): string {
  if (typeof id !== "string" || !CONTAINER_ID_RE.test(id)) throw invalid(`invalid container id '${String(id)}'`);
  return id;
}

export class Paths {
  readonly dataRoot: string;

  constructor(dataRoot: string, readonly socketBase = "/run/berth") {
    if (!dataRoot || /[\n\0,:]/.test(dataRoot)) {
      // ',' and ':' would break overlay's option string (lowerdir=a:b,upperdir=…).
      throw invalid(`invalid data root '${dataRoot}': must not contain ',', ':', newlines or NUL`);
    }
    this.dataRoot = resolve(dataRoot);
  }

  /** `runc --root`: one state dir per data root. */
  get runcRoot(): string { return join(this.dataRoot, "runc"); }
  /** conmon --exit-dir: one file per container id, content = exit code. */
  get exitDir(): string { return join(this.dataRoot, "exits"); }
  get containersDir(): string { return join(this.dataRoot, "containers"); }
  get volumesDir(): string { return join(this.dataRoot, "volumes"); }
  /** `<name>` → the checkpoint whose migration put volume `<name>` here, until the migration is settled. */
  get volumeMovesDir(): string { return join(this.dataRoot, "volume-moves"); }
  /** `<name>` → `<checkpointId> <containerId>`: a volume a migration from here takes away, until settled. */
  get volumeMovesOutDir(): string { return join(this.dataRoot, "volume-moves-out"); }
  get imagesDir(): string { return join(this.dataRoot, "images"); }
  /** Pinned namespaces of lone bridge containers and pods, one dir per sandbox key. */
  get sandboxesDir(): string { return join(this.dataRoot, "sandboxes"); }
  /** Shared OCI layout every import is copied into (blobs dedupe across images). */
  get imageLayout(): string { return join(this.imagesDir, "oci"); }
  /** Unpacked image rootfs dirs, one per manifest digest: `<rootfsDir>/<hex>/rootfs`. */
  get imageRootfsDir(): string { return join(this.imagesDir, "rootfs"); }
  get imageIndex(): string { return join(this.imagesDir, "index.json"); }
  /** CRIU dumps being made, uploaded or restored: one dir per checkpoint id. */
  get checkpointsDir(): string { return join(this.dataRoot, "checkpoints"); }
  /** Local checkpoints (issue 11): one sanitized copy per critical container, `<id>.json` (not CRIU dumps). */
  get localCheckpointsDir(): string { return join(this.dataRoot, "local-checkpoints"); }
  /** The offline journal (issue 11): facts recorded while the log could not be reached, in a dir of its own. */
  get offlineJournal(): string { return join(this.dataRoot, "offline", "journal.ndjson"); }

  /** A container's pre-dump (memory only, the parent of its next checkpoint): `images`, `work`, `run`. */
  preDump(containerId: string): { dir: string; images: string; work: string; run: string } {
    const dir = join(this.checkpointsDir, `predump-${checkId(containerId)}`);
    return { dir, images: join(dir, "images"), work: join(dir, "work"), run: join(dir, "run") };
  }

  checkpoint(checkpointId: string): CheckpointPaths {
    const dir = join(this.checkpointsDir, checkId(checkpointId));
    return {
      dir,
      images: join(dir, "checkpoint"),
      work: join(dir, "work"),
      restoreWork: join(dir, "restore-work"),
      rootfsDiff: join(dir, "rootfs-diff.tar"),
      meta: join(dir, "meta.json"),
      dumped: join(dir, "dumped"),
      parent: join(dir, "parent"),
      frozen: join(dir, "frozen"),
      volumes: join(dir, "volumes"),
    };
  }

  /** conmon --socket-dir-path: short, and distinct per data root (hash of its absolute path). */
  get socketDir(): string {
    const h = createHash("sha256").update(this.dataRoot).digest("hex").slice(0, 12);
    return join(this.socketBase, h);
  }

  volume(name: string): string { return join(this.volumesDir, checkVolumeName(name)); }
  exitFile(id: string): string { return join(this.exitDir, checkId(id)); }
  /** conmon symlinks `<socketDir>/<id>` to the bundle and binds `attach` inside it. */
  attachSocket(id: string): string { return join(this.socketDir, checkId(id), "attach"); }
  socketLink(id: string): string { return join(this.socketDir, checkId(id)); }

  /**
   * A revision's rw layer and its rootfs mount point: revision 0 (every container's first) in the
   * container dir itself, each upgrade's in `rev-<N>/` beside it, so that an upgrade mounts the
   * next revision's rootfs while the old one still runs.
   */
  layer(id: string, revision: number): { dir: string; upper: string; work: string; rootfs: string } {
    const c = join(this.containersDir, checkId(id));
    if (!Number.isInteger(revision) || revision < 0) throw invalid(`invalid revision ${revision}`);
    const dir = revision === 0 ? c : join(c, `rev-${revision}`);
    return { dir, upper: join(dir, "upper"), work: join(dir, "work"), rootfs: join(dir, "rootfs") };
  }

  container(id: string): ContainerPaths {
    const dir = join(this.containersDir, checkId(id));
    return {
      dir,
      bundle: dir,
      config: join(dir, "config.json"),
      rootfs: join(dir, "rootfs"),
      upper: join(dir, "upper"),
      work: join(dir, "work"),
      conmonPidFile: join(dir, "conmon.pid"),
      pidFile: join(dir, "ctr.pid"),
      log: join(dir, "ctr.log"),
      // The spec's log cap, if it has one (the rotator reads it; the daemon's flags otherwise).
      logPolicy: join(dir, "log.json"),
      // conmon's control fifo (in its bundle dir): `2 0 0\n` makes it reopen ctr.log.
      ctlFifo: join(dir, "ctl"),
      runcLog: join(dir, "runc.log"),
      // conmon --persist-dir (and conmon's cwd): it drops `oom` and `exit` here.
      persistDir: dir,
      oomFile: join(dir, "oom"),
      // Which lower, upper and work dirs make its rootfs (the active revision's).
      overlay: join(dir, "overlay.json"),
    };
  }
}

export interface CheckpointPaths {
  dir: string;
  /** CRIU's images (runc --image-path). */
  images: string;
  /** runc --work-path of the dump: dump.log. */
  work: string;
  /** The restore's work path: restore.log. */
  restoreWork: string;
  /** The rw layer (overlay upper dir) as a tar, whiteouts and xattrs kept. */
  rootfsDiff: string;
  meta: string;
  /** Written once the dump and the diff are complete. */
  dumped: string;
  /** Written before a leave-running dump freezes a running container, gone once it is thawed. */
  frozen: string;
  /** The pre-dump this checkpoint was made on (CRIU's images link `checkpoint/parent` → `../parent`). */
  parent: string;
  /** A migration's volumes, `<name>.tar` each (the container's named and anonymous volumes move with it). */
  volumes: string;
}

export interface ContainerPaths {
  dir: string;
  bundle: string;
  config: string;
  rootfs: string;
  upper: string;
  work: string;
  conmonPidFile: string;
  pidFile: string;
  log: string;
  logPolicy: string;
  ctlFifo: string;
  runcLog: string;
  persistDir: string;
  oomFile: string;
  overlay: string;
}
