// Daemon options (flags and environment, API.md), the secrets kept in the data root, and the
// client.json that the CLI and other clients read, and auditor.json.
import { randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { isIP } from "node:net";
import { NAME_RE } from "./shared/spec.js";
import type { ClientConfig } from "./contract/client.js";
import writeFileAtomic from "write-file-atomic";
import { parseSize } from "./shared/sizes.js";

export { parseSize };
import { DEFAULT_USERS } from "./runtime/nats-roles.js";

export type { ClientConfig };

export interface DaemonOptions {
  dataRoot: string;
  node: string;
  natsUrl?: string;
  natsPort: number;
  natsCreds?: string;
  /** With an external server: the client user (`user:password`) client.json hands to the CLI on this host. */
  clientUser?: string;
  httpListen: string;
  /** Seed image imported on start when the store lacks `busybox:latest`. */
  seedImage: string;
  /** Remove containers found in this node's runc root that the log does not know. */
  gcOrphans?: boolean;
  /**
   * The embedded nats-server's JetStream `sync_interval`: "always" (fsync every write) or a Go
   * duration ("2m", "30s"). Unset: DEFAULT_NATS_SYNC. Ignored with an external NATS.
   */
  natsSync?: string;
  /** Containers' log cap where their spec sets none: bytes per file, and files (current + rotated). */
  logMaxSize?: number;
  logMaxFiles?: number;
  /** The bridge network (`--subnet`): unset, a /24 of 10.89.0.0/16 chosen once and kept. */
  subnet?: string;
  /**
   * Copies of the event stream and of every bucket on a JetStream cluster (`--replicas`, 1–5).
   * Unset: as many servers as the cluster has, up to 3 (1 on a single server).
   */
  replicas?: number;
  /**
   * How this node's container migrations send their archive (`--migration-transfer`): "direct",
   * from this daemon to the target's over NATS (the default), or "store", through the object store.
   */
  migrationTransfer?: "direct" | "store";
  /**
   * The address of this host other nodes' daemons reach it on, where it offers a one-off TCP port
   * per direct migration archive it sends (`--migration-listen`, DEFAULT_MIGRATION_LISTEN). A
   * target that cannot connect takes the archive as NATS frames instead.
   */
  migrationListen?: string;
  /**
   * With an external NATS (`--nats-url`): how long a start waits for it before the containers with
   * a local checkpoint are started from their copies (`--offline-after`, seconds; default
   * DEFAULT_OFFLINE_AFTER_SEC).
   */
  offlineAfterSec?: number;
  /** How long a local checkpoint whose container the log says was removed or moved away is kept after the hand-back (bootkube's grace period). */
  checkpointGraceSec?: number;
}

export const DEFAULT_OFFLINE_AFTER_SEC = 10;

/** Loopback: the nodes of one machine connect; other machines' take NATS frames until it is set. */
export const DEFAULT_MIGRATION_LISTEN = "127.0.0.1";

/** The bounds the spec's `log` field has too (src/events/spec.ts LogOptions). */
export const LOG_SIZE_MIN = 16 * 1024;
export const LOG_SIZE_MAX = 2 ** 40;
export const LOG_FILES_MAX = 100;


export const DEFAULT_SEED_IMAGE = "/opt/berth/images/busybox-latest.oci.tar";

/**
 * fsync before every acknowledgement: an acknowledged event survives a host crash or power loss,
 * not only a process kill (docs/ARCHITECTURE.md "Durability" has the measured cost; "2m",
 * nats-server's own default, is the flag's choice for those who trade that for throughput).
 */
export const DEFAULT_NATS_SYNC = "always";

/** "always" or a Go duration of nats-server's config ("2m", "1m30s", "500ms"). */
export function checkNatsSync(s: string): string {
  if (s === "always" || (/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s) && /[1-9]/.test(s))) return s;
  throw new Error(`bad --nats-sync '${s}': "always" or a duration such as 2m, 30s, 500ms`);
}

export function defaultOptions(env: NodeJS.ProcessEnv = process.env): DaemonOptions {
  return {
    dataRoot: env.BERTH_DATA_ROOT ?? "/var/lib/berth",
    node: env.BERTH_NODE ?? hostname().split(".")[0],
    natsUrl: env.BERTH_NATS_URL || undefined,
    replicas: env.BERTH_REPLICAS ? Number(env.BERTH_REPLICAS) : undefined,
    natsPort: Number(env.BERTH_NATS_PORT ?? 4222),
    natsCreds: env.BERTH_NATS_CREDS || undefined,
    clientUser: env.BERTH_CLIENT_USER || undefined,
    httpListen: env.BERTH_HTTP_LISTEN ?? "127.0.0.1:7780",
    seedImage: env.BERTH_SEED_IMAGE ?? DEFAULT_SEED_IMAGE,
    gcOrphans: env.BERTH_GC_ORPHANS === "1" || env.BERTH_GC_ORPHANS === "true",
    natsSync: env.BERTH_NATS_SYNC || undefined,
    logMaxSize: env.BERTH_LOG_MAX_SIZE ? parseSize(env.BERTH_LOG_MAX_SIZE) : undefined,
    logMaxFiles: env.BERTH_LOG_MAX_FILES ? (/^\d+$/.test(env.BERTH_LOG_MAX_FILES) ? Number(env.BERTH_LOG_MAX_FILES) : NaN) : undefined,
    subnet: env.BERTH_SUBNET || undefined,
    migrationTransfer: (env.BERTH_MIGRATION_TRANSFER || undefined) as DaemonOptions["migrationTransfer"],
    migrationListen: env.BERTH_MIGRATION_LISTEN || undefined,
    offlineAfterSec: env.BERTH_OFFLINE_AFTER ? Number(env.BERTH_OFFLINE_AFTER) : undefined,
    checkpointGraceSec: env.BERTH_CHECKPOINT_GRACE ? Number(env.BERTH_CHECKPOINT_GRACE) : undefined,
  };
}

export function checkOptions(o: DaemonOptions): void {
  if (!o.dataRoot.startsWith("/")) throw new Error(`--data-root must be absolute: ${o.dataRoot}`);
  if (!NAME_RE.test(o.node)) throw new Error(`--node must match ${NAME_RE}: ${o.node}`);
  if (!Number.isInteger(o.natsPort) || o.natsPort < 1 || o.natsPort > 65535) throw new Error(`bad --nats-port ${o.natsPort}`);
  parseListen(o.httpListen);
  if (o.natsSync !== undefined) checkNatsSync(o.natsSync);
  if (o.logMaxSize !== undefined && !(Number.isSafeInteger(o.logMaxSize) && o.logMaxSize >= LOG_SIZE_MIN && o.logMaxSize <= LOG_SIZE_MAX)) {
    throw new Error(`bad --log-max-size (BERTH_LOG_MAX_SIZE): a size from 16k to 1t, such as 20m`);
  }
  if (o.logMaxFiles !== undefined && !(Number.isInteger(o.logMaxFiles) && o.logMaxFiles >= 1 && o.logMaxFiles <= LOG_FILES_MAX)) {
    throw new Error(`bad --log-max-files (BERTH_LOG_MAX_FILES): a whole number from 1 to ${LOG_FILES_MAX}`);
  }
  if (o.migrationTransfer !== undefined && o.migrationTransfer !== "direct" && o.migrationTransfer !== "store") {
    throw new Error(`bad --migration-transfer (BERTH_MIGRATION_TRANSFER) '${String(o.migrationTransfer)}': "direct" or "store"`);
  }
  // An address the other nodes are given to connect to: 0.0.0.0 or :: would send them to themselves.
  if (o.migrationListen !== undefined && (isIP(o.migrationListen) === 0 || /^(0\.0\.0\.0|::|0:0:0:0:0:0:0:0)$/.test(o.migrationListen))) {
    throw new Error(`bad --migration-listen (BERTH_MIGRATION_LISTEN) '${o.migrationListen}': an IP address of this host that the other nodes reach (not 0.0.0.0)`);
  }
  const daySeconds = (v: number | undefined, what: string) => {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 86_400)) throw new Error(`bad ${what}: seconds from 0 to 86400`);
  };
  daySeconds(o.offlineAfterSec, "--offline-after (BERTH_OFFLINE_AFTER)");
  daySeconds(o.checkpointGraceSec, "--checkpoint-grace (BERTH_CHECKPOINT_GRACE)");
  if (o.replicas !== undefined && !(Number.isInteger(o.replicas) && o.replicas >= 1 && o.replicas <= 5)) {
    throw new Error("bad --replicas (BERTH_REPLICAS): a whole number from 1 to 5");
  }
}

/**
 * How many copies of the log a JetStream cluster keeps by default: one per server (the INFO a
 * server sends lists every server's client URL, its own too), at most 3; 1 on a lone server.
 */
export function clusterReplicas(info: { cluster?: string; connect_urls?: string[] } | undefined): number {
  if (!info?.cluster) return 1;
  return Math.min(3, Math.max(1, new Set(info.connect_urls ?? []).size));
}

export function parseListen(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  const host = s.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad --http-listen '${s}' (HOST:PORT)`);
  return { host, port };
}

/**
 * `--nats-url` as nats.js takes it: servers without user info (nats.js ignores a `user:pass@` or
 * `token@` in a URL) and the credentials of the first server that has some (the daemon's user
 * on an external server; they must not reach client.json).
 */
export function splitNatsUrl(list: string): { servers: string[]; user?: string; pass?: string; token?: string } {
  let auth: { user: string; pass: string } | { token: string } | undefined;
  const servers = list.split(",").map((raw) => {
    const m = /^([a-z][a-z0-9+.-]*:\/\/)?([^@/]*)@(.*)$/i.exec(raw.trim());
    if (!m) return raw.trim();
    const i = m[2].indexOf(":");
    auth ??= i < 0 ? { token: decodeURIComponent(m[2]) } : { user: decodeURIComponent(m[2].slice(0, i)), pass: decodeURIComponent(m[2].slice(i + 1)) };
    return (m[1] ?? "") + m[3];
  });
  return { servers, ...auth };
}

export interface Secrets {
  /** The daemon's NATS user (the embedded server's only user before roles). */
  natsUser: string;
  natsPass: string;
  httpToken: string;
  /** The NATS users handed out: client.json's, and auditor.json's (read-only on the stream). */
  client: { user: string; pass: string };
  auditor: { user: string; pass: string };
}

const newPass = () => randomBytes(24).toString("base64url");

/**
 * Generated on the first start and kept (0600), so clients keep working across restarts. A file
 * of an older daemon (natsUser, natsPass, httpToken only) keeps those values and gains the
 * client's and auditor's users.
 */
export async function loadSecrets(dataRoot: string): Promise<Secrets> {
  const p = join(dataRoot, "secrets.json");
  let s: Partial<Secrets> = {};
  try {
    const parsed: unknown = JSON.parse(await readFile(p, "utf8"));
    if (parsed && typeof parsed === "object") s = parsed as Partial<Secrets>;
  } catch {
    /* first start */
  }
  const full: Secrets = {
    natsUser: s.natsUser ?? DEFAULT_USERS.daemon,
    natsPass: s.natsPass ?? newPass(),
    httpToken: s.httpToken ?? randomBytes(32).toString("base64url"),
    client: s.client ?? { user: DEFAULT_USERS.client, pass: newPass() },
    auditor: s.auditor ?? { user: DEFAULT_USERS.auditor, pass: newPass() },
  };
  if (JSON.stringify(full) !== JSON.stringify(s)) await writeAtomic(p, JSON.stringify(full, null, 2));
  return full;
}


export async function writeClientConfig(dataRoot: string, c: ClientConfig): Promise<void> {
  await writeAtomic(join(dataRoot, "client.json"), JSON.stringify(c, null, 2) + "\n");
}

/** The auditor's connection (auditor.json, 0600): the NATS part of client.json's shape, no HTTP token. */
export interface AuditorConfig {
  node: string;
  nats: { servers: string[]; user: string; pass: string };
}

export async function writeAuditorConfig(dataRoot: string, c: AuditorConfig): Promise<void> {
  await writeAtomic(join(dataRoot, "auditor.json"), JSON.stringify(c, null, 2) + "\n");
}

export async function readClientConfig(dataRoot: string): Promise<ClientConfig> {
  return JSON.parse(await readFile(join(dataRoot, "client.json"), "utf8")) as ClientConfig;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  await mkdir(join(path, ".."), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, text, { mode: 0o600 });
}
