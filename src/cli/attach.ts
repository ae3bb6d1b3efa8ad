// Verbs on a container's own terminal (the attach route, docs/API.md "Attach"): `berth run -it`
// (create, then attach and start in one step: nothing of the run's output is lost),
// `berth start -a[i] REF` and `berth attach REF`. Each exits with the container's exit status;
// detaching (the client going away) leaves the container running.
import type { Command } from "commander";
import type { ContainerSpec } from "../shared/spec.js";
import type { Client } from "./client.js";
import { CliError } from "./client.js";
import { enc, type Json, type Register } from "./kit.js";

/** How long `--rm` waits for the daemon's removal before the CLI exits anyway. */
const REMOVAL_WAIT_MS = 15_000;

async function onTerminal(client: Client, ref: string, start: boolean): Promise<number> {
  const { terminal } = await import("./terminal.js");
  const code = await terminal(client, { route: `/v1/containers/${enc(ref)}/attach`, what: "attach", ready: "attached", first: { type: "attach", start } });
  return code < 0 ? 126 : code & 255;
}

/** `berth run -it`: the container's exit status; with `--rm`, once the daemon has removed it. */
export async function runOnTerminal(client: Client, spec: ContainerSpec): Promise<number> {
  const { id } = await client.command<{ id: string }>("berth.cmd.container.create", spec as Record<string, unknown>);
  let code: number;
  try {
    code = await onTerminal(client, id, true);
  } catch (err) {
    // It never ran (or its session broke off): `--rm` still means no container is left behind.
    if (spec.autoRemove) await client.command("berth.cmd.container.remove", { id, force: true }).catch(() => undefined);
    throw err;
  }
  if (spec.autoRemove) await gone(client, id);
  return code;
}

/** Until the container's view answers NotFound (its autoRemove is done), for a while. */
async function gone(client: Client, id: string): Promise<void> {
  const deadline = Date.now() + REMOVAL_WAIT_MS;
  while (Date.now() < deadline) {
    try {
      await client.get(`/v1/containers/${id}`);
    } catch (err) {
      if (err instanceof CliError && err.code === "NotFound") return;
      throw err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const attach: Register = (program, cli, name) =>
  cli
    .verb(program, name, "attach to a running container's terminal; exits with its status")
    .argument("<ref>", "container name or id")
    .action(async (ref: string, _o: Json, cmd: Command) => {
      cli.ctx.exitCode = await onTerminal(await cli.client(cmd), ref, false);
    });

/** `start`, and with -a its terminal: one container, started and attached in one step. */
export const start: Register = (program, cli, name) =>
  cli
    .verb(program, name, "start containers (-a: one, on its terminal, exiting with its status)")
    .option("-a, --attach", "attach to its terminal (a container made with -t)")
    .option("-i, --interactive", "accepted with -a: input goes to the terminal when the container was made with -i")
    .argument("<ref...>", "container names or ids")
    .action(async (refs: string[], o: Json & { attach?: boolean }, cmd: Command) => {
      const c = await cli.client(cmd);
      if (!o.attach) return cli.each(refs, o, (id) => c.command("berth.cmd.container.start", { id }));
      if (refs.length !== 1) throw new CliError("InvalidArgument", "-a attaches to one container");
      cli.ctx.exitCode = await onTerminal(c, refs[0], true);
    });
