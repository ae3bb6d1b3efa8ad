// Verbs whose code lives in a file of its own (logs.ts, exec.ts, audit.ts), registered the way
// program.ts's table wants: each is loaded only when its verb runs, or for help.
import { InvalidArgumentError, type Command } from "commander";
import { addAuditVerbs } from "./audit.js";
import { addExecVerb } from "./exec.js";
import type { Json, Register } from "./kit.js";

const tailLines = (s: string) => {
  if (s !== "all" && !/^\d+$/.test(s)) throw new InvalidArgumentError("must be a number of lines or all");
  return s;
};

export const logs: Register = (program, cli, name) =>
  cli
    .verb(program, name, "print a container's output")
    .option("-f, --follow", "keep printing new lines until the container stops")
    .option("--since <time>", "only lines since: RFC 3339, a duration before now (10m, 1h30m) or Unix seconds")
    .option("-t, --timestamps", "prefix each line with its time")
    .option("-n, --tail <lines>", "only the last lines (a number or all)", tailLines)
    .argument("<ref>", "container name or id")
    .action(async (ref: string, o: Json & { follow?: boolean; since?: string; timestamps?: boolean; tail?: string }, cmd: Command) => {
      const { runLogs } = await import("./logs.js");
      await runLogs(await cli.client(cmd), ref, o, (s) => void process.stdout.write(s));
    });

export const exec: Register = (program, cli) => addExecVerb(program, { client: cli.client, setExit: (code) => (cli.ctx.exitCode = code) });

export const audit: Register = (program, cli) =>
  addAuditVerbs(program, { client: cli.client, verb: cli.verb, setExitCode: (code) => void (cli.ctx.exitCode = code) });
