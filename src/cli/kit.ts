// What every verb file uses: output, the per-run client, the shared option parsers, and the
// "each ref, carry on after a failure" loop. Nothing heavy: this is on every verb's start-up path.
import { InvalidArgumentError, type Command } from "commander";
import { CliError, Client, DEFAULT_DATA_ROOT, loadConfig } from "./client.js";

export interface Ctx {
  exitCode: number;
  client?: Client;
}

export type Json = { json?: boolean };
export const out = (s: string) => void process.stdout.write(s);
export const printJson = (v: unknown) => out(JSON.stringify(v, null, 2) + "\n");
export const printError = (code: string, message: string) => void process.stderr.write(`berth: ${code}: ${message}\n`);
export const enc = encodeURIComponent;

export const seconds = (s: string) => {
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError("must be whole seconds");
  return Number(s);
};
export const count = (s: string) => {
  if (!/^\d+$/.test(s)) throw new InvalidArgumentError("must be a non-negative integer");
  return Number(s);
};
export const collect = (s: string, prev: string[] = []) => [...prev, s];

/** `--data-root` as given on the verb, else before it, else BERTH_DATA_ROOT, else the default. */
export function dataRootOf(cmd: Command): string {
  for (let c: Command | null = cmd; c; c = c.parent) {
    if (c.getOptionValueSource("dataRoot") === "cli") return c.getOptionValue("dataRoot") as string;
  }
  return process.env.BERTH_DATA_ROOT || DEFAULT_DATA_ROOT;
}

/** A command's reply deadline: its own grace period plus the daemon's default 30 s. */
export function timeouts(graceSec: number | undefined): { body: Record<string, number>; ms?: number } {
  if (graceSec === undefined || graceSec <= 20) return { body: {} };
  const timeoutMs = (graceSec + 30) * 1000;
  return { body: { timeoutMs }, ms: timeoutMs + 5000 };
}

/**
 * Adds the verb `name` (its options, arguments and action) to `program`. main.ts calls only the
 * one the command line names (all of them for help, or when none matches): a run builds one verb.
 */
export type Register = (program: Command, cli: Cli, name: string) => void;
export type VerbTable = Record<string, Register>;

/** Handed to every verb's Register. */
export interface Cli {
  ctx: Ctx;
  /** `parent.command(name)` with `--data-root` and `--json`. */
  verb(parent: Command, name: string, description: string): Command;
  /** The client for the data root `cmd` runs against; one per run, closed by main. */
  client(cmd: Command): Promise<Client>;
  /** Run `f` on each ref; report each failure and carry on, like docker does. */
  each(refs: string[], o: Json, f: (ref: string) => Promise<unknown>): Promise<void>;
}

export function cliKit(ctx: Ctx): Cli {
  return {
    ctx,
    verb: (parent, name, description) =>
      parent.command(name).description(description).option("--data-root <dir>", "where client.json is").option("--json", "machine-readable output"),
    client: async (cmd) => (ctx.client ??= new Client(await loadConfig(dataRootOf(cmd)))),
    async each(refs, o, f) {
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
    },
  };
}
