// `berth migrate [--pre-copy] REF NODE`: move a running container to another node with its
// memory (`berth.cmd.container.migrate`), as one command.
import type { Command } from "commander";
import { CRIU_REPLY_MS } from "./checkpoint.js";
import { out, printJson, type Json, type Register } from "./kit.js";

export const migrate: Register = (program, cli, name) =>
  cli
    .verb(program, name, "move a running container to another node with its memory state (CRIU: dump here, restore there)")
    .option("--pre-copy", "pre-dump its memory while it runs first, so the final freeze is shorter (needs soft-dirty tracking)")
    .argument("<ref>", "the container (name or id)")
    .argument("<node>", "the node to move it to (berth node ls)")
    .action(async (ref: string, node: string, o: Json & { preCopy?: boolean }, cmd: Command) => {
      const r = await (await cli.client(cmd)).command<{ id: string; node: string; downtimeMs: number | null }>(
        "berth.cmd.container.migrate", { id: ref, targetNode: node, ...(o.preCopy ? { preCopy: true } : {}) }, CRIU_REPLY_MS * 2,
      );
      if (o.json) printJson(r);
      else out(`${r.id} ${r.node} downtime ${r.downtimeMs ?? "?"} ms\n`);
    });
