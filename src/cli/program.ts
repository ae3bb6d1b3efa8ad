// The `berth` program: the verb table, and a run of the command line through it (main.ts runs it).
// Exit status: 0 ok, 1 error (`berth: <code>: <message>` on stderr), 2 usage.
import { createRequire } from "node:module";
import { Command, CommanderError } from "commander";
import { checkpoint, restore } from "./checkpoint.js";
import { CliError, DEFAULT_DATA_ROOT } from "./client.js";
import { verbs as containers } from "./containers.js";
import { daemon } from "./daemon.js";
import { verbs as events } from "./events.js";
import { image } from "./images.js";
import { node } from "./nodes.js";
import { migrate } from "./migrate.js";
import { cliKit, printError, type Ctx, type VerbTable } from "./kit.js";
import { audit, exec, logs } from "./more-verbs.js";
import { pod } from "./pods.js";
import { rollback, upgrade } from "./upgrade.js";

// The verb table: verb name → its Register, in the order `berth --help` lists them. To add a verb:
//  1. write src/cli/<verb>.ts exporting `export const <verb>: Register = (program, cli, name) =>
//     cli.verb(program, name, "<description>")` (that gives --data-root and --json), then its
//     options and an action that gets the connection from `await cli.client(cmd)`:
//     `client.command(subject, body)` for a command (NATS), `client.get(route)` for a JSON query,
//     `for await (const line of client.lines(route, accept, signal))` for a streamed one (or
//     `client.open(...)` for the raw response);
//     a CliError thrown prints as `berth: <code>: <message>` and exits 1;
//  2. import it above and add `<verb>,` below.
// Only the named verb is built on a run, but every verb's file is loaded: import anything heavy
// inside the action (`await import(...)`), not at the top of the file.
const VERBS: VerbTable = { ...containers, exec, logs, upgrade, rollback, checkpoint, restore, migrate, pod, ...events, image, node, audit, daemon };

/** The package's version; the bundle has it inlined (esbuild `define`), tsc's build reads it. */
declare const BERTH_VERSION: string | undefined;
function version(): string {
  if (typeof BERTH_VERSION === "string") return BERTH_VERSION;
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version;
  } catch {
    return "unknown";
  }
}

/**
 * The verb the command line names, if it is one of ours: the first word after the global options
 * (`--data-root DIR`). Undefined for help, --version or a word that is no verb.
 */
export function verbOf(argv: readonly string[]): string | undefined {
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--data-root") i++;
    else if (a.startsWith("--data-root=")) continue;
    else return !a.startsWith("-") && Object.hasOwn(VERBS, a) ? a : undefined;
  }
  return undefined;
}

/** The program with the verb `argv` names, or with every verb when it names none. */
export function buildProgram(ctx: Ctx, argv: readonly string[] = process.argv): Command {
  const program = new Command("berth")
    .description("an event-sourced container engine: every lifecycle change is an event on NATS JetStream")
    .version(version())
    .exitOverride()
    .enablePositionalOptions()
    .showHelpAfterError("(add --help for usage)")
    .option("--data-root <dir>", `where the daemon keeps client.json (env BERTH_DATA_ROOT, default ${DEFAULT_DATA_ROOT})`);
  const cli = cliKit(ctx);
  // Building every verb's options costs each run a few ms; help and "did you mean" need them all.
  const only = verbOf(argv);
  for (const [name, register] of Object.entries(VERBS)) if (!only || only === name) register(program, cli, name);
  return program;
}

/** Run the CLI; resolves to the exit status. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  const ctx: Ctx = { exitCode: 0 };
  try {
    await buildProgram(ctx, argv).parseAsync([...argv]);
    return ctx.exitCode;
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
