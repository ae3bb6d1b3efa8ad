// The `berth` CLI (API.md "CLI"): commands go to the daemon as NATS requests, queries over HTTP.
// Exit status: 0 ok, 1 error (`berth: <code>: <message>` on stderr), 2 usage.
import { createRequire } from "node:module";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { ContainerView } from "../contract/views.js";
import { addRunOptions, parseBytes, specFromOptions, type RunOptions } from "./args.js";
import { addAuditVerbs } from "./audit.js";
import { CliError, Client, DEFAULT_DATA_ROOT, loadConfig } from "./client.js";
import { addExecVerb } from "./exec.js";
import { ago, bytes, containerTable, eventLine, shortId, table, type EventRow } from "./format.js";

function version(): string {
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version;
  } catch {
    return "unknown";
  }
}

interface Ctx {
  exitCode: number;
  client?: Client;
  /** The daemon verb leaves the process running when it returns. */
  daemon: boolean;
}

type Json = { json?: boolean };
const out = (s: string | Uint8Array) => void process.stdout.write(s);
const printJson = (v: unknown) => out(JSON.stringify(v, null, 2) + "\n");
const printError = (code: string, message: string) => void process.stderr.write(`berth: ${code}: ${message}\n`);
const enc = encodeURIComponent;

const port = (s: string) => {
  if (!/^\d+$/.test(s) || Number(s) < 1 || Number(s) > 65535) throw new InvalidArgumentError("must be a port number");
  return Number(s);
};
const seconds = (s: string) => {
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError("must be whole seconds");
  return Number(s);
};
const count = (s: string) => {
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError("must be a non-negative integer");
  return Number(s);
};
const collect = (s: string, prev: string[] = []) => [...prev, s];
const tailLines = (s: string) => {
  if (s !== "all" && !/^\d+$/.test(s)) throw new InvalidArgumentError("must be a number of lines or all");
  return s;
};

/** `--data-root` as given on the verb, else before it, else BERTH_DATA_ROOT, else the default. */
function dataRootOf(cmd: Command): string {
  for (let c: Command | null = cmd; c; c = c.parent) {
    if (c.getOptionValueSource("dataRoot") === "cli") return c.getOptionValue("dataRoot") as string;
  }
  return process.env.BERTH_DATA_ROOT || DEFAULT_DATA_ROOT;
}

/** A command's reply deadline: its own grace period plus the daemon's default 30 s. */
function timeouts(graceSec: number | undefined): { body: Record<string, number>; ms?: number } {
  if (graceSec === undefined || graceSec <= 20) return { body: {} };
  const timeoutMs = (graceSec + 30) * 1000;
  return { body: { timeoutMs }, ms: timeoutMs + 5000 };
}

export function buildProgram(ctx: Ctx): Command {
  const program = new Command("berth")
    .description("an event-sourced container engine: every lifecycle change is an event on NATS JetStream")
    .version(version())
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError("(add --help for usage)")
    .option("--data-root <dir>", `where the daemon keeps client.json (env BERTH_DATA_ROOT, default ${DEFAULT_DATA_ROOT})`);

  const client = async (cmd: Command): Promise<Client> => (ctx.client ??= new Client(await loadConfig(dataRootOf(cmd))));
  const verb = (parent: Command, name: string, description: string) =>
    parent.command(name).description(description).option("--data-root <dir>", "where client.json is").option("--json", "machine-readable output");

  /** Run `f` on each ref; report each failure and carry on, like docker does. */
  async function each(refs: string[], o: Json, f: (ref: string) => Promise<unknown>): Promise<void> {
    const results: unknown[] = [];
    for (const ref of refs) {
      try {
        const result = await f(ref);
        results.push({ ref, ok: true, result });
        if (!o.json) out(`${ref}\n`);
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        ctx.exitCode = 1;
        results.push({ ref, ok: false, error: { code: err.code, message: err.message } });
        printError(err.code, err.message);
      }
    }
    if (o.json) printJson(results);
  }

  for (const [name, subject, description] of [
    ["run", "berth.cmd.container.run", "create and start a container; prints its id"],
    ["create", "berth.cmd.container.create", "create a container; prints its id"],
  ] as const) {
    addRunOptions(program.command(name).description(description))
      .option("--data-root <dir>", "where client.json is")
      .action(async (image: string, command: string[], o: RunOptions, cmd: Command) => {
        const spec = specFromOptions(o, image, command);
        const r = await (await client(cmd)).command<{ id: string }>(subject, spec);
        if (o.json) printJson(r);
        else out(`${r.id}\n`);
      });
  }

  const simple = [
    ["start", "start containers", "berth.cmd.container.start"],
    ["pause", "pause containers", "berth.cmd.container.pause"],
    ["unpause", "unpause containers", "berth.cmd.container.unpause"],
  ] as const;
  for (const [name, description, subject] of simple) {
    verb(program, name, description)
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json, cmd: Command) => {
        const c = await client(cmd);
        await each(refs, o, (id) => c.command(subject, { id }));
      });
  }
  for (const [name, description, subject] of [
    ["stop", "stop containers: the stop signal, then SIGKILL after the timeout", "berth.cmd.container.stop"],
    ["restart", "restart containers", "berth.cmd.container.restart"],
  ] as const) {
    verb(program, name, description)
      .option("-t, --timeout <seconds>", "seconds to wait before SIGKILL", seconds)
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json & { timeout?: number }, cmd: Command) => {
        const c = await client(cmd);
        const t = timeouts(o.timeout);
        await each(refs, o, (id) =>
          c.command(subject, { id, ...(o.timeout !== undefined ? { timeoutSec: o.timeout } : {}), ...t.body }, t.ms),
        );
      });
  }
  verb(program, "kill", "send a signal to containers (default SIGKILL)")
    .option("-s, --signal <signal>", "signal name or number")
    .argument("<ref...>", "container names or ids")
    .action(async (refs: string[], o: Json & { signal?: string }, cmd: Command) => {
      const c = await client(cmd);
      await each(refs, o, (id) => c.command("berth.cmd.container.kill", { id, ...(o.signal ? { signal: o.signal } : {}) }));
    });
  verb(program, "rm", "remove containers")
    .option("-f, --force", "kill a running container first")
    .argument("<ref...>", "container names or ids")
    .action(async (refs: string[], o: Json & { force?: boolean }, cmd: Command) => {
      const c = await client(cmd);
      await each(refs, o, (id) => c.command("berth.cmd.container.remove", { id, ...(o.force ? { force: true } : {}) }));
    });

  addExecVerb(program, { client, setExit: (code) => (ctx.exitCode = code) });

  verb(program, "ps", "list containers (running and paused; -a for all)")
    .option("-a, --all", "every container not yet removed")
    .option("-q, --quiet", "only ids")
    .option("--node <node>", "only this node's")
    .option("--state <state>", "only in this state")
    .option("-l, --label <k=v>", "only with this label (repeatable)", collect)
    .action(async (o: Json & { all?: boolean; quiet?: boolean; node?: string; state?: string; label?: string[] }, cmd: Command) => {
      const q = new URLSearchParams();
      if (o.all) q.set("all", "true");
      if (o.node) q.set("node", o.node);
      if (o.state) q.set("state", o.state);
      for (const l of o.label ?? []) q.append("label", l);
      const r = await (await client(cmd)).get<{ containers: ContainerView[] }>(`/v1/containers${q.size ? `?${q}` : ""}`);
      if (o.json) printJson(r.containers);
      else if (o.quiet) out(r.containers.map((c) => `${c.id}\n`).join(""));
      else out(containerTable(r.containers));
    });
  verb(program, "inspect", "show a container as JSON")
    .argument("<ref>", "container name or id")
    .action(async (ref: string, _o: Json, cmd: Command) => {
      printJson(await (await client(cmd)).get(`/v1/containers/${enc(ref)}`));
    });
  verb(program, "logs", "print a container's output")
    .option("-f, --follow", "keep printing new lines until the container stops")
    .option("--since <time>", "only lines since: RFC 3339, a duration before now (10m, 1h30m) or Unix seconds")
    .option("-t, --timestamps", "prefix each line with its time")
    .option("-n, --tail <lines>", "only the last lines (a number or all)", tailLines)
    .argument("<ref>", "container name or id")
    .action(async (ref: string, o: Json & { follow?: boolean; since?: string; timestamps?: boolean; tail?: string }, cmd: Command) => {
      const { runLogs } = await import("./logs.js");
      await runLogs(await loadConfig(dataRootOf(cmd)), ref, o, out);
    });
  verb(program, "events", "show the event log")
    .option("--since <seq|time>", "from this sequence number (inclusive) or RFC 3339 time")
    .option("--until <seq|time>", "up to this sequence number (inclusive) or RFC 3339 time")
    .option("--type <type>", "only these event types (comma-separated or repeated)", collect)
    .option("--container <ref>", "only this container's events")
    .option("--limit <n>", "at most this many events", count)
    .option("-f, --follow", "keep streaming new events")
    .action(async (o: Json & { since?: string; until?: string; type?: string[]; container?: string; limit?: number; follow?: boolean }, cmd: Command) => {
      const q = new URLSearchParams();
      if (o.since) q.set("since", o.since);
      if (o.until) q.set("until", o.until);
      if (o.type?.length) q.set("type", o.type.join(","));
      if (o.container) q.set("container", o.container);
      if (o.limit !== undefined) q.set("limit", String(o.limit));
      const route = `/v1/events${q.size ? `?${q}` : ""}`;
      const c = await client(cmd);
      if (!o.follow) {
        const r = await c.get<{ events: EventRow[] }>(route);
        if (o.json) printJson(r.events);
        else out(eventLine(null) + r.events.map(eventLine).join(""));
        return;
      }
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      if (!o.json) out(eventLine(null));
      await c.stream(route, (data) => out(o.json ? `${data}\n` : eventLine(JSON.parse(data) as EventRow)), ac.signal);
    });
  verb(program, "replay", "show the containers as they were at a point of the log")
    .requiredOption("--at <seq|time>", "a sequence number or an RFC 3339 time")
    .action(async (o: Json & { at: string }, cmd: Command) => {
      const r = await (await client(cmd)).get<{ seq: number; containers: ContainerView[] }>(`/v1/state?at=${enc(o.at)}`);
      if (o.json) printJson(r);
      else out(`as of event ${r.seq}\n` + containerTable(r.containers));
    });

  const image = program.command("image").description("manage images");
  verb(image, "import", "import an image: oci-archive:PATH, docker-archive:PATH or oci:DIR[:TAG]")
    .argument("<source>", "where the image is")
    .option("--name <name>", "the name to give it, e.g. app:1.0")
    .action(async (source: string, o: Json & { name?: string }, cmd: Command) => {
      const r = await (await client(cmd)).command<{ name: string; digest: string }>("berth.cmd.image.import", { source, ...(o.name ? { name: o.name } : {}) });
      if (o.json) printJson(r);
      else out(`${r.name} ${r.digest}\n`);
    });
  verb(image, "ls", "list images")
    .option("--node <node>", "only this node's")
    .action(async (o: Json & { node?: string }, cmd: Command) => {
      type Img = { name: string; digest: string; sizeBytes: number; node: string; importedAt: string };
      const r = await (await client(cmd)).get<{ images: Img[] }>("/v1/images");
      const images = r.images.filter((i) => !o.node || i.node === o.node);
      if (o.json) printJson(images);
      else out(table(["NAME", "DIGEST", "SIZE", "NODE", "IMPORTED"], images.map((i) => [i.name, "sha256:" + shortId(i.digest.replace(/^sha256:/, "")), bytes(i.sizeBytes), i.node, ago(i.importedAt)])));
    });
  verb(image, "rm", "remove images")
    .argument("<name...>", "image names")
    .action(async (names: string[], o: Json, cmd: Command) => {
      const c = await client(cmd);
      await each(names, o, (name) => c.command("berth.cmd.image.remove", { name }));
    });

  addAuditVerbs(program, { client, verb, setExitCode: (c) => void (ctx.exitCode = c) });

  program
    .command("daemon")
    .description("run the node agent")
    .option("--data-root <dir>", `state directory (env BERTH_DATA_ROOT, default ${DEFAULT_DATA_ROOT})`)
    .option("--node <name>", "this node's name (env BERTH_NODE, default the host name)")
    .option("--nats-url <url>", "an external NATS server (env BERTH_NATS_URL; default: start the embedded one)")
    .option("--nats-port <port>", "the embedded nats-server's port (env BERTH_NATS_PORT, default 4222)", port)
    .option("--http-listen <host:port>", "the query API's address (env BERTH_HTTP_LISTEN, default 127.0.0.1:7780)")
    .option("--nats-creds <file>", "credentials for an external NATS (env BERTH_NATS_CREDS)")
    .option("--gc-orphans", "remove containers in this node's runc root that the log does not know (env BERTH_GC_ORPHANS=1)")
    .option("--nats-sync <always|duration>", "the embedded nats-server's fsync policy: always, or an interval such as 2m (env BERTH_NATS_SYNC, default 2m)")
    .option("--log-max-size <bytes>", "a container log file's size before it rotates, e.g. 20m (env BERTH_LOG_MAX_SIZE, default 20m)", parseBytes)
    .option("--log-max-files <n>", "log files kept per container, the current one included (env BERTH_LOG_MAX_FILES, default 5)", count)
    .action(async (o: { node?: string; natsUrl?: string; natsPort?: number; httpListen?: string; natsCreds?: string; gcOrphans?: boolean; natsSync?: string; logMaxSize?: number; logMaxFiles?: number }, cmd: Command) => {
      ctx.daemon = true;
      const [{ runDaemon }, { defaultOptions }] = await Promise.all([import("../daemon.js"), import("../config.js")]);
      // Flags win over the environment, which wins over the defaults (config.ts reads it).
      const d = defaultOptions();
      if (process.env.BERTH_NATS_PORT) port(process.env.BERTH_NATS_PORT);
      await runDaemon({
        ...d,
        dataRoot: dataRootOf(cmd),
        node: o.node ?? d.node,
        natsUrl: o.natsUrl ?? d.natsUrl,
        natsPort: o.natsPort ?? d.natsPort,
        httpListen: o.httpListen ?? d.httpListen,
        natsCreds: o.natsCreds ?? d.natsCreds,
        gcOrphans: o.gcOrphans ?? d.gcOrphans,
        natsSync: o.natsSync ?? d.natsSync,
        logMaxSize: o.logMaxSize ?? d.logMaxSize,
        logMaxFiles: o.logMaxFiles ?? d.logMaxFiles,
      });
    });

  return program;
}

/** Run the CLI; resolves to the exit status, or null when the daemon should keep running. */
export async function main(argv: readonly string[] = process.argv): Promise<number | null> {
  const ctx: Ctx = { exitCode: 0, daemon: false };
  try {
    await buildProgram(ctx).parseAsync([...argv]);
    return ctx.daemon ? null : ctx.exitCode;
  } catch (err) {
    // Commander has already printed usage errors; help and --version end with exitCode 0.
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) printError(err.code, err.message);
    else printError("Internal", (err as Error)?.stack ?? String(err));
    return 1;
  } finally {
    await ctx.client?.close();
  }
}

process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  // `berth events | head` closes the pipe early: that is not an error.
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});
// The daemon verb returns (null) only once the daemon has stopped: exit then too, so that no
// leftover timer or socket holds a stopped daemon's process open.
const status = await main();
// Flush, then exit: idle keep-alive sockets must not hold the CLI open.
process.stdout.write("", () => process.exit(status ?? 0));
