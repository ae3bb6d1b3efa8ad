// The local checkpoint store (issue 11, bootkube's pod-checkpointer): one sanitized copy per
// critical container, `<id>.json` in a 0700 dir under the data root, so that a node that boots
// while the log cannot be reached can still start what it cannot live without. A copy is written
// atomically (write-file-atomic, fsynced, then the dir fsynced) and checked on every read like an
// event from the stream: schema, size, file name; a copy that fails is ignored with a log line and
// never returned half-configured.
import { constants } from "node:fs";
import { chmod, lstat, mkdir, open, readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Ajv, type ValidateFunction } from "ajv";
import writeFileAtomic from "write-file-atomic";
import { invalid } from "../shared/errors.js";
import { ContainerSpec, NAME_PATTERN, PodSpec } from "../shared/spec.js";
import { validateSpecRules } from "../shared/spec-rules.js";
import { logger, type Logger } from "../log.js";
import { CONTAINER_ID_RE, checkId } from "./paths.js";

export { CHECKPOINT_ANNOTATION, checkCheckpointAnnotation, wantsLocalCheckpoint } from "../shared/checkpoint-annotation.js";

/** The copy's own format: a copy of another version is refused (never guessed at). */
export const LOCAL_COPY_SCHEMA = 1;
/** Far above any real spec; a bigger file is refused before it is read. */
export const MAX_COPY_BYTES = 4 * 1024 * 1024;

const Strict = { additionalProperties: false } as const;
const Time = Type.String({ pattern: "^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$" });
const Id = Type.String({ pattern: CONTAINER_ID_RE.source });
const NodeName = Type.String({ pattern: NAME_PATTERN, maxLength: 128 });

/**
 * What the log said when the copy was last written, if it is on its way out: removed, or moved to
 * another node (`since`: when the projection saw it). The checkpointer's grace runs from `since`,
 * and a node that boots offline reads from here that it no longer owns the container.
 */
export const Retiring = Type.Object(
  {
    reason: Type.Union([Type.Literal("removed"), Type.Literal("migrated")]),
    since: Time,
    toNode: Type.Optional(NodeName),
  },
  Strict,
);
export type Retiring = Static<typeof Retiring>;

const Ip = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$" });

/**
 * A member's pod as the copy keeps it: what its sandbox is made of (the first member started
 * offline makes it, as online): the pod's name (the members' hostname), its spec without `node`,
 * and the IP its sandbox had.
 */
export const PodCopy = Type.Object(
  {
    id: Id,
    name: Type.String({ pattern: NAME_PATTERN }),
    spec: PodSpec,
    ip: Type.Union([Ip, Type.Null()]),
  },
  Strict,
);
export type PodCopy = Static<typeof PodCopy>;

export const LocalCopy = Type.Object(
  {
    schema: Type.Literal(LOCAL_COPY_SCHEMA),
    id: Id,
    name: Type.String({ pattern: NAME_PATTERN }),
    /** The node that owned it when the copy was written (only that node's copies start). */
    node: NodeName,
    /** sanitize(spec): nothing only the log may decide. */
    spec: ContainerSpec,
    image: Type.String({ minLength: 1, maxLength: 512 }),
    imageDigest: Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }),
    /** The active revision: its rw layer is the one to mount (Paths.layer). */
    revision: Type.Integer({ minimum: 0, maximum: 1_000_000_000 }),
    /** Its bridge IP when the copy was written (the one to ask for again), null without one. */
    ip: Type.Union([Ip, Type.Null()]),
    /**
     * Its pod, when it is a pod member (a bare id: a copy written before copies kept the pod's
     * sandbox; such a member is not started offline).
     */
    pod: Type.Union([PodCopy, Id, Type.Null()]),
    /** When the container was created (members start offline in this order, as `pod start` does them). */
    createdAt: Type.Optional(Time),
    retiring: Type.Union([Retiring, Type.Null()]),
    writtenAt: Time,
    /** The container's version (stream sequence of its last event) the copy was taken at. */
    logSeq: Type.Integer({ minimum: 0 }),
  },
  Strict,
);
export type LocalCopy = Static<typeof LocalCopy>;

/** A file of the dir that is not a valid copy, and why. */
export interface RejectedCopy {
  file: string;
  /** The id its name gives, when it has one. */
  id: string | null;
  reason: string;
}

/**
 * Spec fields only the log may decide, dropped from a copy: where it runs (`node`), and
 * `autoRemove` (deleting a container and its anonymous volumes is a decision for the log, not for
 * a node on its own; its exit offline leaves it stopped, and the log's spec rules after hand-back).
 * Counters, pids, exit codes and health are state, not spec, and never enter a copy.
 */
export const LOG_ONLY_SPEC_FIELDS = ["node", "autoRemove"] as const;

/** The spec a copy keeps: a deep copy without LOG_ONLY_SPEC_FIELDS. Pure. */
export function sanitize(spec: ContainerSpec): ContainerSpec {
  const out = structuredClone(spec) as Record<string, unknown>;
  for (const f of LOG_ONLY_SPEC_FIELDS) delete out[f];
  return out as ContainerSpec;
}

/** What a copy is made of: the container's state as the read model holds it (ContainerState has all of these). */
export interface CopySource {
  id: string;
  name: string;
  image: string;
  imageDigest: string;
  spec: ContainerSpec;
  ip: string | null;
  revision: number;
  /** Its version: the stream sequence of its last event. */
  version: number;
  createdAt: string;
}

/** A member's pod as the read model holds it (PodState has all of these). */
export interface PodSource {
  id: string;
  name: string;
  spec: PodSpec;
  ip: string | null;
}

/** What a copy keeps of a member's pod: its spec without `node` (the log's to decide). Pure. */
export function podCopyOf(p: PodSource): PodCopy {
  const { node: _node, ...spec } = structuredClone(p.spec);
  return { id: p.id, name: p.name, spec, ip: p.ip };
}

/** The copy of a container's state, sanitized. Pure: the owner, pod and time come from the caller. */
export function localCopyOf(c: CopySource, at: { node: string; pod: PodSource | null; writtenAt: string; retiring?: Retiring | null }): LocalCopy {
  return {
    schema: LOCAL_COPY_SCHEMA,
    id: c.id,
    name: c.name,
    node: at.node,
    spec: sanitize(c.spec),
    image: c.image,
    imageDigest: c.imageDigest,
    revision: c.revision,
    ip: c.ip,
    pod: at.pod ? podCopyOf(at.pod) : null,
    createdAt: c.createdAt,
    retiring: at.retiring ?? null,
    writtenAt: at.writtenAt,
    logSeq: c.version,
  };
}

// As src/api/schemas.ts: compiled on first use (ContainerSpec is the costly part).
const ajv = new Ajv({ allErrors: false, strict: false, coerceTypes: false, useDefaults: false });
let compiled: ValidateFunction | null = null;

/** Why `v` is not a copy that may be started from (null: it is one). Pure. */
export function checkCopy(v: unknown): string | null {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return "not a JSON object";
  const version = (v as { schema?: unknown }).schema;
  if (version !== LOCAL_COPY_SCHEMA) return `schema version ${String(JSON.stringify(version)).slice(0, 16)} is not ${LOCAL_COPY_SCHEMA} (written by another berth?)`;
  compiled ??= ajv.compile(LocalCopy);
  if (!compiled(v)) {
    const e = compiled.errors?.[0];
    const where = e?.instancePath ? e.instancePath.slice(1).replaceAll("/", ".") : "copy";
    const extra = e?.keyword === "additionalProperties" ? ` '${(e.params as { additionalProperty: string }).additionalProperty}'` : "";
    return `${where} ${e?.message ?? "is invalid"}${extra}`;
  }
  const c = v as LocalCopy;
  for (const t of [c.writtenAt, c.createdAt, c.retiring?.since]) if (t !== undefined && Number.isNaN(Date.parse(t))) return `'${t}' is not a valid time`;
  for (const f of LOG_ONLY_SPEC_FIELDS) if (Object.hasOwn(c.spec, f)) return `spec holds '${f}', which only the log may decide`;
  if (c.pod && typeof c.pod === "object") {
    if (Object.hasOwn(c.pod.spec, "node")) return "pod.spec holds 'node', which only the log may decide";
    if (c.spec.pod !== c.pod.id) return "pod.id is not the pod its spec names";
  }
  try {
    validateSpecRules(c.spec);
  } catch (err) {
    return `spec: ${(err as Error).message}`;
  }
  return null;
}

/** JSON.parse failed at the very end of the text: it was cut short, not garbled. */
function endsTooSoon(text: string, err: Error): boolean {
  if (/end of JSON input/.test(err.message)) return true;
  const at = /at position (\d+)/.exec(err.message);
  return at !== null && Number(at[1]) >= text.length;
}

const FILE_RE = /^(.+)\.json$/;
/** write-file-atomic's temp file beside its target: `<file>.<uint32>`. */
const TEMP_RE = /^.+\.json\.\d+$/;

export class LocalCheckpoints {
  private readonly log: Logger;

  private constructor(readonly dir: string, log?: Logger) {
    this.log = log ?? logger("runtime.local-checkpoints");
  }

  /** The store in `dir` (Paths.localCheckpointsDir), created 0700 if missing and made 0700 if not. */
  static async open(dir: string, o: { log?: Logger } = {}): Promise<LocalCheckpoints> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const st = await lstat(dir);
    if (!st.isDirectory()) throw invalid(`local checkpoint dir '${dir}' is not a directory`);
    // mkdir's mode went through the umask, and an existing dir kept its own.
    if ((st.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
    return new LocalCheckpoints(dir, o.log);
  }

  private file(id: string): string {
    return join(this.dir, `${checkId(id)}.json`);
  }

  /** Write (or replace) a copy, atomically and durably. InvalidArgument for a copy that would not be read back. */
  async write(copy: LocalCopy): Promise<void> {
    const file = this.file(copy.id);
    const why = checkCopy(copy);
    if (why) throw invalid(`local checkpoint of ${copy.id}: ${why}`);
    const text = JSON.stringify(copy);
    if (Buffer.byteLength(text) > MAX_COPY_BYTES) throw invalid(`local checkpoint of ${copy.id} is larger than ${MAX_COPY_BYTES} bytes`);
    // write-file-atomic follows a symlink at the target; a copy is only ever a regular file here.
    const st = await lstat(file).catch(() => null);
    if (st && !st.isFile()) await unlink(file);
    await writeFileAtomic(file, text, { mode: 0o600, fsync: true });
    await this.syncDir();
  }

  /** The copy of `id`, or null when there is none or it is not valid (logged). */
  async read(id: string): Promise<LocalCopy | null> {
    const r = await this.load(`${checkId(id)}.json`, id);
    if (r === null || "copy" in r) return r?.copy ?? null;
    this.warn(r);
    return null;
  }

  /** Every valid copy (by id), and every other file of the dir with the reason it is ignored (each logged). */
  async list(): Promise<{ copies: LocalCopy[]; rejected: RejectedCopy[] }> {
    const copies: LocalCopy[] = [];
    const rejected: RejectedCopy[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const m = FILE_RE.exec(name);
      if (!m || !CONTAINER_ID_RE.test(m[1])) {
        rejected.push({ file: name, id: null, reason: TEMP_RE.test(name) ? "a leftover of a write that was cut short" : "not a local checkpoint's file name (<id>.json)" });
        continue;
      }
      const r = await this.load(name, m[1]);
      if (r === null) continue; // removed meanwhile
      if ("copy" in r) copies.push(r.copy);
      else rejected.push(r);
    }
    for (const r of rejected) this.warn(r);
    return { copies, rejected };
  }

  /** Delete the copy of `id`; false when there was none. */
  async remove(id: string): Promise<boolean> {
    try {
      await unlink(this.file(id));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    await this.syncDir();
    return true;
  }

  private async load(name: string, id: string): Promise<{ copy: LocalCopy } | RejectedCopy | null> {
    const reject = (reason: string): RejectedCopy => ({ file: name, id, reason });
    let text: string;
    try {
      // O_NOFOLLOW: a symlink planted here is refused, not followed out of the data root.
      const fh = await open(join(this.dir, name), constants.O_RDONLY | constants.O_NOFOLLOW);
      try {
        const st = await fh.stat();
        if (!st.isFile()) return reject("not a regular file");
        if (st.size > MAX_COPY_BYTES) return reject(`larger than ${MAX_COPY_BYTES} bytes (${st.size})`);
        if (st.size === 0) return reject("empty (partly written)");
        text = await fh.readFile("utf8");
      } finally {
        await fh.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return null;
      if (code === "ELOOP") return reject("a symlink");
      return reject(`unreadable: ${(err as Error).message}`);
    }
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      return reject(endsTooSoon(text, err as Error) ? "truncated (partly written)" : "corrupt JSON");
    }
    const why = checkCopy(v);
    if (why) return reject(why);
    const copy = v as LocalCopy;
    if (copy.id !== id) return reject(`its id '${copy.id}' does not match its file name`);
    return { copy };
  }

  private warn(r: RejectedCopy): void {
    this.log.warn({ dir: this.dir, file: r.file, id: r.id, reason: r.reason }, `local checkpoint ${r.file} ignored: ${r.reason}`);
  }

  /** A rename or unlink is durable once the dir itself is synced. */
  private async syncDir(): Promise<void> {
    const fh = await open(this.dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }
}
