// The daemon's own entry point: `node dist/daemon-main.js [flags]` (deploy/daemon.sh,
// deploy/berth.service). `berth daemon [flags]` reaches the same code through the CLI, which loads
// this file only for that verb: the CLI's other verbs never load fastify, pino or the daemon.
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import { parseSize } from "./shared/sizes.js";

const DEFAULT_DATA_ROOT = "/var/lib/berth";

const port = (s: string) => {
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new InvalidArgumentError("must be a port number");
  return Number(s);
};

const size = (s: string) => {
  const n = parseSize(s);
  if (Number.isNaN(n)) throw new InvalidArgumentError("must be bytes or a number with k, m, g or t");
  return n;
};
const count = (s: string) => {
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError("must be a non-negative integer");
  return Number(s);
};

interface Flags {
  dataRoot?: string;
  node?: string;
  natsUrl?: string;
  natsPort?: number;
  httpListen?: string;
  natsCreds?: string;
  clientUser?: string;
  gcOrphans?: boolean;
  natsSync?: string;
  logMaxSize?: number;
  logMaxFiles?: number;
  subnet?: string;
  replicas?: number;
  migrationTransfer?: "direct" | "store";
  migrationListen?: string;
  offlineAfter?: number;
  checkpointGrace?: number;
}

/** The daemon's flags (API.md "berth daemon"); `name` is what usage and help call it. */
export function daemonCommand(name = "berth daemon"): Command {
  return new Command(name)
    .description("run the node agent")
    .exitOverride()
    .showHelpAfterError("(add --help for usage)")
    .option("--data-root <dir>", `state directory (env BERTH_DATA_ROOT, default ${DEFAULT_DATA_ROOT})`)
    .option("--node <name>", "this node's name (env BERTH_NODE, default the host name)")
    .option("--nats-url <url>", "an external NATS server (env BERTH_NATS_URL; default: start the embedded one)")
    .option("--nats-port <port>", "the embedded nats-server's port (env BERTH_NATS_PORT, default 4222)", port)
    .option("--http-listen <host:port>", "the query API's address (env BERTH_HTTP_LISTEN, default 127.0.0.1:7780)")
    .option("--nats-creds <file>", "credentials for an external NATS (env BERTH_NATS_CREDS)")
    .option("--client-user <user:password>", "with an external NATS: the client user client.json gives this host's CLI (env BERTH_CLIENT_USER)", (v) => {
      if (!/^[^:\s]+:\S+$/.test(v)) throw new InvalidArgumentError("must be user:password");
      return v;
    })
    .option("--gc-orphans", "remove containers in this node's runc root that the log does not know (env BERTH_GC_ORPHANS=1)")
    .option("--nats-sync <always|duration>", "the embedded nats-server's fsync policy: always, or an interval such as 2m (env BERTH_NATS_SYNC, default always)")
    .option("--log-max-size <bytes>", "a container log file's size before it rotates, e.g. 20m (env BERTH_LOG_MAX_SIZE, default 20m)", size)
    .option("--log-max-files <n>", "log files kept per container, the current one included (env BERTH_LOG_MAX_FILES, default 5)", count)
    .option("--replicas <n>", "copies of the log and buckets on a JetStream cluster (env BERTH_REPLICAS; default one per server, at most 3)", (v) => Number(v))
    .option("--subnet <cidr>", "the bridge network's subnet (env BERTH_SUBNET, default a /24 of 10.89.0.0/16 chosen once and kept)")
    .option("--migration-transfer <direct|store>", "how this node's migrations send their archive: straight to the target's daemon, or through the object store (env BERTH_MIGRATION_TRANSFER, default direct)", (v) => {
      if (v !== "direct" && v !== "store") throw new InvalidArgumentError('must be "direct" or "store"');
      return v;
    })
    .option("--offline-after <sec>", "with --nats-url: how long a start waits for NATS before containers marked berth.io/checkpoint=true start from their local copies (env BERTH_OFFLINE_AFTER, default 10)", Number)
    .option("--checkpoint-grace <sec>", "how long a local checkpoint is kept once the log, back after an offline span, says its container was removed or moved to another node (its process is stopped at once; env BERTH_CHECKPOINT_GRACE, default 60)", Number)
    .option("--migration-listen <ip>", "an IP address of this host other nodes reach: direct migration archives go from a one-off TCP port there (env BERTH_MIGRATION_LISTEN, default 127.0.0.1; a target that cannot reach it takes NATS frames)");
}

/**
 * Parse the daemon's flags and run it in the foreground until SIGINT/SIGTERM. Resolves to the
 * exit status: 0 after a clean stop (or --help), 1 when it could not start, 2 on bad usage.
 */
export async function daemonMain(args: readonly string[], name?: string): Promise<number> {
  let flags: Flags;
  try {
    flags = daemonCommand(name).parse([...args], { from: "user" }).opts<Flags>();
  } catch (err) {
    // Commander has printed the usage error; help ends with exitCode 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  try {
    const [{ runDaemon }, { defaultOptions }] = await Promise.all([import("./daemon.js"), import("./config.js")]);
    // Flags win over the environment, which wins over the defaults (config.ts reads it).
    const d = defaultOptions();
    if (process.env.BERTH_NATS_PORT) port(process.env.BERTH_NATS_PORT);
    await runDaemon({
      ...d,
      dataRoot: flags.dataRoot || process.env.BERTH_DATA_ROOT || DEFAULT_DATA_ROOT,
      node: flags.node ?? d.node,
      natsUrl: flags.natsUrl ?? d.natsUrl,
      natsPort: flags.natsPort ?? d.natsPort,
      httpListen: flags.httpListen ?? d.httpListen,
      natsCreds: flags.natsCreds ?? d.natsCreds,
      clientUser: flags.clientUser ?? d.clientUser,
      gcOrphans: flags.gcOrphans ?? d.gcOrphans,
      natsSync: flags.natsSync ?? d.natsSync,
      logMaxSize: flags.logMaxSize ?? d.logMaxSize,
      logMaxFiles: flags.logMaxFiles ?? d.logMaxFiles,
      subnet: flags.subnet ?? d.subnet,
      replicas: flags.replicas ?? d.replicas,
      migrationTransfer: flags.migrationTransfer ?? d.migrationTransfer,
      migrationListen: flags.migrationListen ?? d.migrationListen,
      offlineAfterSec: flags.offlineAfter ?? d.offlineAfterSec,
      checkpointGraceSec: flags.checkpointGrace ?? d.checkpointGraceSec,
    });
    return 0;
  } catch (err) {
    process.stderr.write(`berth: Internal: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

/** Exit once stdout is flushed: no leftover timer or socket may hold a stopped daemon open. */
export function exitAfterFlush(status: number): void {
  process.stdout.write("", () => process.exit(status));
}

function isEntry(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntry()) exitAfterFlush(await daemonMain(process.argv.slice(2), "berth-daemon"));
