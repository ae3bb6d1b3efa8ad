// Container verbs: run, create, start, pause, unpause, stop, restart, kill, rm, ps, inspect (logs
// and exec are in more-verbs.ts).
import type { Command } from "commander";
import type { ContainerView } from "../contract/views.js";
import { addRunOptions, parseKeyValues, parseRestart, specFromOptions, type RunOptions } from "./args.js";
import type { RestartPolicy } from "../shared/spec.js";
import { attach, runOnTerminal, start } from "./attach.js";
import { containerTable } from "./format.js";
import { collect, enc, out, printJson, seconds, timeouts, type Json, type Register, type VerbTable } from "./kit.js";

/** run and create: a spec from docker-style arguments, one command, the id printed. */
const runLike =
  (subject: string, description: string): Register =>
  (program, cli, name) =>
    addRunOptions(program.command(name).description(description))
      .option("--data-root <dir>", "where client.json is")
      .action(async (image: string, command: string[], o: RunOptions, cmd: Command) => {
        const spec = specFromOptions(o, image, command);
        // `run -t` stays on the container's terminal, as docker's does (`-d` to leave it).
        if (name === "run" && spec.tty && !o.detach) return void (cli.ctx.exitCode = await runOnTerminal(await cli.client(cmd), spec));
        const r = await (await cli.client(cmd)).command<{ id: string }>(subject, spec);
        if (o.json) printJson(r);
        else out(`${r.id}\n`);
      });

/** A command on each of several containers, by id or name. */
const onEach =
  (description: string, subject: string): Register =>
  (program, cli, name) =>
    cli
      .verb(program, name, description)
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json, cmd: Command) => {
        const c = await cli.client(cmd);
        await cli.each(refs, o, (id) => c.command(subject, { id }));
      });

/** stop and restart: a grace period before SIGKILL, and a reply deadline that covers it. */
const withTimeout =
  (description: string, subject: string): Register =>
  (program, cli, name) =>
    cli
      .verb(program, name, description)
      .option("-t, --timeout <seconds>", "seconds to wait before SIGKILL", seconds)
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json & { timeout?: number }, cmd: Command) => {
        const c = await cli.client(cmd);
        const t = timeouts(o.timeout);
        await cli.each(refs, o, (id) =>
          c.command(subject, { id, ...(o.timeout !== undefined ? { timeoutSec: o.timeout } : {}), ...t.body }, t.ms),
        );
      });

export const verbs: VerbTable = {
  run: runLike("berth.cmd.container.run", "create and start a container; prints its id"),
  create: runLike("berth.cmd.container.create", "create a container; prints its id"),
  start,
  attach,
  pause: onEach("pause containers", "berth.cmd.container.pause"),
  unpause: onEach("unpause containers", "berth.cmd.container.unpause"),
  stop: withTimeout("stop containers: the stop signal, then SIGKILL after the timeout", "berth.cmd.container.stop"),
  restart: withTimeout("restart containers", "berth.cmd.container.restart"),

  update: (program, cli, name) =>
    cli
      .verb(program, name, "change containers' restart policy or annotations (`--annotation k-` removes k)")
      .option("--restart <policy>", "no, always, on-failure[:N] or unless-stopped", parseRestart)
      .option("--annotation <k=v|k->", "set an annotation, or remove it with a trailing '-' (repeatable)", collect)
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json & { restart?: RestartPolicy; annotation?: string[] }, cmd: Command) => {
        const annotations: Record<string, string | null> = {};
        for (const a of o.annotation ?? []) {
          if (!a.includes("=") && a.endsWith("-") && a.length > 1) annotations[a.slice(0, -1)] = null;
          else Object.assign(annotations, parseKeyValues("annotation", [a]));
        }
        const patch = { ...(o.restart ? { restartPolicy: o.restart } : {}), ...(o.annotation?.length ? { annotations } : {}) };
        const c = await cli.client(cmd);
        await cli.each(refs, o, (id) => c.command("berth.cmd.container.update", { id, ...patch }));
      }),

  kill: (program, cli, name) =>
    cli
      .verb(program, name, "send a signal to containers (default SIGKILL)")
      .option("-s, --signal <signal>", "signal name or number")
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json & { signal?: string }, cmd: Command) => {
        const c = await cli.client(cmd);
        await cli.each(refs, o, (id) => c.command("berth.cmd.container.kill", { id, ...(o.signal ? { signal: o.signal } : {}) }));
      }),

  rm: (program, cli, name) =>
    cli
      .verb(program, name, "remove containers")
      .option("-f, --force", "kill a running container first")
      .argument("<ref...>", "container names or ids")
      .action(async (refs: string[], o: Json & { force?: boolean }, cmd: Command) => {
        const c = await cli.client(cmd);
        await cli.each(refs, o, (id) => c.command("berth.cmd.container.remove", { id, ...(o.force ? { force: true } : {}) }));
      }),

  ps: (program, cli, name) =>
    cli
      .verb(program, name, "list containers (running and paused; -a for all)")
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
        const r = await (await cli.client(cmd)).get<{ containers: ContainerView[]; offline?: boolean; since?: string }>(`/v1/containers${q.size ? `?${q}` : ""}`);
        // A daemon that cannot reach its log answers from its local checkpoints.
        if (r.offline) process.stderr.write(`berth: offline since ${r.since}: the log cannot be reached; these run from local checkpoints\n`);
        if (o.json) printJson(r.containers);
        else if (o.quiet) out(r.containers.map((c) => `${c.id}\n`).join(""));
        else out(containerTable(r.containers));
      }),

  inspect: (program, cli, name) =>
    cli
      .verb(program, name, "show a container as JSON")
      .argument("<ref>", "container name or id")
      .action(async (ref: string, _o: Json, cmd: Command) => {
        printJson(await (await cli.client(cmd)).get(`/v1/containers/${enc(ref)}`));
      }),
};
