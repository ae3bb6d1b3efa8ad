// The image store: skopeo copies every import into one OCI layout under the data root (blobs
// shared), umoci unpacks each manifest digest ONCE into a read-only rootfs that containers use as
// overlay lowerdir. The name → record index is a JSON file, replaced atomically.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { invalid, notFound } from "../shared/errors.js";
import type { Logger } from "../log.js";
import { run, toolPaths } from "./exec.js";
import { readMountInfo } from "./overlay.js";
import { Paths } from "./paths.js";
import type { ImageConfig, ImageRecord } from "../shared/host-facts.js";
import writeFileAtomic from "write-file-atomic";

const COPY_TIMEOUT_MS = 10 * 60_000;
const UNPACK_TIMEOUT_MS = 10 * 60_000;
const REF_NAME = "org.opencontainers.image.ref.name";
const MAX_NAME = 512;
// registry[:port]/ path components / : tag — the usual image reference, minus digests.
const NAME_RE =
  /^(?:[a-zA-Z0-9.-]+(?::[0-9]{1,5})?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export type ImageSource =
  | { transport: "oci-archive"; path: string }
  | { transport: "docker-archive"; path: string }
  | { transport: "oci"; path: string; ref?: string };

/** `busybox` → `busybox:latest`; a `:` after the last `/` is the tag. */
export function normalizeImageName(name: string): string {
  if (typeof name !== "string" || name.length === 0 || name.length > MAX_NAME) throw invalid(`invalid image name '${name}'`);
  const n = name.lastIndexOf(":") > name.lastIndexOf("/") ? name : `${name}:latest`;
  if (!NAME_RE.test(n)) throw invalid(`invalid image name '${name}'`);
  return n;
}

export function parseImageSource(source: string): ImageSource {
  if (typeof source !== "string" || source.length > 4096 || /[\0\r\n]/.test(source)) {
    throw invalid("image source must be one line");
  }
  const i = source.indexOf(":");
  const transport = source.slice(0, i);
  const rest = source.slice(i + 1);
  const abs = (p: string) => {
    if (!p.startsWith("/") || p.split("/").includes("..")) throw invalid(`image source path '${p}' must be absolute, without '..'`);
    return p;
  };
  switch (transport) {
    case "oci-archive":
    case "docker-archive":
      if (rest.includes(":")) throw invalid(`${transport} source takes a path only: '${source}'`);
      return { transport, path: abs(rest) };
    case "oci": {
      // skopeo's rule: the path ends at the first ':'; the rest is the reference in the layout.
      const j = rest.indexOf(":");
      const path = abs(j < 0 ? rest : rest.slice(0, j));
      const ref = j < 0 ? undefined : rest.slice(j + 1);
      if (ref !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,255}$/.test(ref)) throw invalid(`invalid reference '${ref}' in '${source}'`);
      return { transport, path, ref };
    }
    default:
      throw invalid(`unsupported image source '${source}': use oci-archive:PATH, docker-archive:PATH or oci:DIR[:TAG]`);
  }
}

interface OciIndex { manifests?: { digest: string; mediaType?: string; annotations?: Record<string, string> }[] }
interface OciManifest { config: { digest: string; size: number }; layers: { size: number }[] }
interface OciConfig {
  config?: {
    Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string;
    User?: string; StopSignal?: string; Labels?: Record<string, string> | null;
    Volumes?: Record<string, unknown> | null;
  };
}

export class ImageStore {
  private readonly paths: Paths;
  private readonly log: Logger;
  private records: ImageRecord[] | null = null;
  /** One import/remove at a time: skopeo and umoci rewrite the layout's index.json. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: { dataRoot: string; log: Logger }) {
    this.paths = new Paths(opts.dataRoot);
    this.log = opts.log;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async load(): Promise<ImageRecord[]> {
    if (this.records) return this.records;
    const text = await readFile(this.paths.imageIndex, "utf8").catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return null;
      throw e;
    });
    this.records = text ? ((JSON.parse(text) as { images: ImageRecord[] }).images ?? []) : [];
    return this.records;
  }

  private async save(records: ImageRecord[]): Promise<void> {
    await mkdir(this.paths.imagesDir, { recursive: true });
    await writeFileAtomic(this.paths.imageIndex, JSON.stringify({ version: 1, images: records }, null, 2));
    this.records = records;
  }

  async list(): Promise<ImageRecord[]> {
    return [...(await this.load())];
  }

  async resolve(nameOrDigest: string): Promise<ImageRecord | null> {
    const records = await this.load();
    if (DIGEST_RE.test(nameOrDigest)) return records.find((r) => r.digest === nameOrDigest) ?? null;
    let name: string;
    try {
      name = normalizeImageName(nameOrDigest);
    } catch {
      return null;
    }
    return records.find((r) => r.name === name) ?? null;
  }

  async import(source: string, name?: string): Promise<ImageRecord> {
    const src = parseImageSource(source);
    const wanted = name === undefined ? undefined : normalizeImageName(name);
    return this.serial(() => this.doImport(src, wanted));
  }

  /** The layout tag for a name: opaque, so any valid name maps to a valid OCI tag. */
  private tagFor(name: string): string {
    return `n-${createHash("sha256").update(name).digest("hex").slice(0, 40)}`;
  }

  private async doImport(src: ImageSource, wanted: string | undefined): Promise<ImageRecord> {
    const probe = src.transport === "oci" ? join(src.path, "index.json") : src.path;
    await stat(probe).catch(() => {
      throw notFound(`image source ${src.path} not found`);
    });
    const name = wanted ?? (await this.nameFromSource(src));
    const layout = this.paths.imageLayout;
    const tag = this.tagFor(name);
    await mkdir(this.paths.imageRootfsDir, { recursive: true });
    const from = src.transport === "oci" && src.ref ? `oci:${src.path}:${src.ref}` : `${src.transport}:${src.path}`;
    await run(toolPaths.skopeo, ["copy", "--quiet", "--insecure-policy", from, `oci:${layout}:${tag}`], {
      timeoutMs: COPY_TIMEOUT_MS, log: this.log, toolName: "skopeo",
    });

    const index = await this.readJson<OciIndex>(join(layout, "index.json"));
    const desc = index.manifests?.find((m) => m.annotations?.[REF_NAME] === tag);
    if (!desc) throw notFound(`skopeo copied ${from} but tag ${tag} is not in ${layout}`);
    const digest = desc.digest;
    const manifest = await this.readJson<OciManifest>(this.blob(digest));
    const cfg = (await this.readJson<OciConfig>(this.blob(manifest.config.digest))).config ?? {};
    const config: ImageConfig = {
      entrypoint: cfg.Entrypoint?.length ? cfg.Entrypoint : null,
      cmd: cfg.Cmd?.length ? cfg.Cmd : null,
      env: cfg.Env ?? [],
      workdir: cfg.WorkingDir || "/",
      user: cfg.User ?? "",
      stopSignal: cfg.StopSignal || null,
      labels: cfg.Labels ?? {},
      volumes: Object.keys(cfg.Volumes ?? {}).sort(),
    };
    const rootfs = await this.unpack(tag, digest);
    const record: ImageRecord = {
      name,
      digest,
      config,
      sizeBytes: manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0),
      rootfs,
      importedAt: new Date().toISOString(),
    };
    const others = (await this.load()).filter((r) => r.name !== name);
    await this.save([...others, record]);
    this.log.info({ name, digest }, "image imported");
    return record;
  }

  /** Unpacked once per digest; a half-done unpack never takes the final name. */
  private async unpack(tag: string, digest: string): Promise<string> {
    const dir = join(this.paths.imageRootfsDir, digest.replace(/^sha256:/, ""));
    const rootfs = join(dir, "rootfs");
    if (await stat(rootfs).then(() => true, () => false)) return rootfs;
    const tmp = `${dir}.tmp-${randomBytes(4).toString("hex")}`;
    try {
      await run(toolPaths.umoci, ["unpack", "--image", `${this.paths.imageLayout}:${tag}`, tmp], {
        timeoutMs: UNPACK_TIMEOUT_MS, log: this.log, toolName: "umoci",
      });
      await rename(tmp, dir);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
    return rootfs;
  }

  private async nameFromSource(src: ImageSource): Promise<string> {
    let found: string | undefined;
    if (src.transport === "oci") {
      found = src.ref ?? this.singleRef(await this.readJson<OciIndex>(join(src.path, "index.json")));
    } else {
      const member = src.transport === "oci-archive" ? "index.json" : "manifest.json";
      const { stdout } = await run(toolPaths.tar, ["-xOf", src.path, member], { timeoutMs: 60_000, log: this.log, toolName: "tar" });
      found = src.transport === "oci-archive"
        ? this.singleRef(JSON.parse(stdout) as OciIndex)
        : (JSON.parse(stdout) as { RepoTags?: string[] }[])[0]?.RepoTags?.[0];
    }
    if (!found) throw invalid(`cannot tell the image's name from ${src.transport}:${src.path}; pass a name`);
    return normalizeImageName(found);
  }

  private singleRef(index: OciIndex): string | undefined {
    const refs = (index.manifests ?? []).map((m) => m.annotations?.[REF_NAME]).filter(Boolean) as string[];
    return refs.length === 1 ? refs[0] : undefined;
  }

  private blob(digest: string): string {
    if (!DIGEST_RE.test(digest)) throw invalid(`unexpected digest '${digest}'`);
    return join(this.paths.imageLayout, "blobs", "sha256", digest.slice(7));
  }

  private async readJson<T>(path: string): Promise<T> {
    return JSON.parse(await readFile(path, "utf8")) as T;
  }

  /** Drops the name; the unpacked rootfs goes too once no name and no mounted overlay uses it. */
  async remove(nameOrDigest: string): Promise<void> {
    return this.serial(async () => {
      const rec = await this.resolve(nameOrDigest);
      if (!rec) throw notFound(`no image '${nameOrDigest}'`);
      const rest = (await this.load()).filter((r) => r.name !== rec.name);
      await this.save(rest);
      const layout = this.paths.imageLayout;
      await run(toolPaths.umoci, ["rm", "--image", `${layout}:${this.tagFor(rec.name)}`], { timeoutMs: 60_000, log: this.log, toolName: "umoci" })
        .catch((err) => this.log.warn({ err: (err as Error).message }, "umoci rm failed"));
      if (rest.some((r) => r.digest === rec.digest)) return;
      const inUse = (await readMountInfo()).some((m) => m.fsType === "overlay" && `${m.superOptions},`.includes(`lowerdir=${rec.rootfs},`));
      if (inUse) {
        this.log.warn({ name: rec.name, rootfs: rec.rootfs }, "image rootfs still used by a container; kept");
        return;
      }
      await rm(join(rec.rootfs, ".."), { recursive: true, force: true });
      await run(toolPaths.umoci, ["gc", "--layout", layout], { timeoutMs: 120_000, log: this.log, toolName: "umoci" })
        .catch((err) => this.log.warn({ err: (err as Error).message }, "umoci gc failed"));
      this.log.info({ name: rec.name, digest: rec.digest }, "image removed");
    });
  }
}
