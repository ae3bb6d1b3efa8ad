// `berth exec [-it] [-e K=V] [-u USER] [-w DIR] [--timeout S] REF CMD…`: a command in a running
// container. Piped, it is one NATS request (output comes at the end, bounded); with -t it is a
// terminal session over the HTTP API's WebSocket route (docs/API.md). Either way the CLI exits
// with the process's own status. `ws` is loaded only for -t, so plain verbs do not pay for it.
import type { Command } from "commander";
import { InvalidArgumentError } from "commander";
import { CliError, type Client } from "./client.js";

export interface ExecCliDeps {
  client: (cmd: Command) => Promise<Client>;
  /** Where the process's exit status goes. */
  setExit: (code: number) => void;
}

interface ExecOpts {
  interactive?: boolean;
  tty?: boolean;
  env?: string[];
  user?: string;
  workdir?: string;
  timeout?: number;
  json?: boolean;
}

const DEFAULT_TIMEOUT_SEC = 600;
const collect = (s: string, prev: string[] = []) => [...prev, s];
const seconds = (s: string) => {
  if (!/^\d+$/.test(s) || Number(s) < 1) throw new InvalidArgumentError("must be whole seconds ≥ 1");
  return Number(s);
};

export function addExecVerb(program: Command, d: ExecCliDeps): void {
  program
    .command("exec")
    .description("run a command in a running container; exits with its status")
    .argument("<ref>", "container name or id")
    .argument("<command...>", "the command and its arguments")
    // Everything after REF belongs to the command: `sh -c 'ls -l'` is not ours to parse.
    .passThroughOptions()
    .option("-i, --interactive", "keep stdin open (with -t)")
    .option("-t, --tty", "a terminal: stdin, stdout and window size go to the process")
    .option("-e, --env <K=V>", "environment variable (repeatable); a bare K copies it from here", collect)
    .option("-u, --user <user[:group]>", "user to run as: a name from the container's /etc/passwd or uid[:gid]")
    .option("-w, --workdir <dir>", "working directory inside the container")
    .option("--timeout <seconds>", `kill the command after this long (default ${DEFAULT_TIMEOUT_SEC} s without -t, none with it)`, seconds)
    .option("--data-root <dir>", "where client.json is")
    .option("--json", "print the reply as JSON (without -t)")
    .action(async (ref: string, command: string[], o: ExecOpts, cmd: Command) => {
      if (o.interactive && !o.tty) throw new CliError("InvalidArgument", "-i without -t is not supported yet: use -it");
      const env = (o.env ?? []).flatMap((e) => (e.includes("=") ? [e] : process.env[e] !== undefined ? [`${e}=${process.env[e]}`] : []));
      const body = {
        cmd: command,
        ...(env.length ? { env } : {}),
        ...(o.user !== undefined ? { user: o.user } : {}),
        ...(o.workdir !== undefined ? { workdir: o.workdir } : {}),
      };
      const client = await d.client(cmd);
      if (o.tty) {
        const { terminal } = await import("./terminal.js");
        const start = { type: "start", ...body, ...(o.timeout ? { timeoutSec: o.timeout } : {}) };
        return d.setExit(await terminal(client, { route: `/v1/containers/${encodeURIComponent(ref)}/exec`, what: "exec", ready: "started", first: start }));
      }
      const timeoutSec = o.timeout ?? DEFAULT_TIMEOUT_SEC;
      const r = await client.command<{ exitCode: number; stdout: string; stderr: string; truncated: boolean }>(
        "berth.cmd.container.exec",
        { id: ref, ...body, timeoutSec },
        (timeoutSec + 15) * 1000,
      );
      if (o.json) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      else {
        process.stdout.write(r.stdout);
        process.stderr.write(r.stderr);
        if (r.truncated) process.stderr.write("berth: the output was cut (exec keeps 1 MiB of each stream; use -t for more)\n");
      }
      d.setExit(r.exitCode < 0 ? 126 : r.exitCode & 255);
    });
}
