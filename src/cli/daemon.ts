// `berth daemon [flags]`: a verb for users, but its own program (src/daemon-main.ts), loaded only
// for this verb, so that no other verb pays for fastify, pino or the daemon's modules. Its flags
// (and --help) are parsed there, the same for `node dist/daemon-main.js [flags]`.
import type { Command } from "commander";
import type { Register } from "./kit.js";
import { importModule } from "./load.js";

export const daemon: Register = (program, cli, name) => {
  program
    .command(name)
    .description("run the node agent (berth daemon --help for its flags)")
    .usage("[flags]")
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument("[flags...]")
    .action(async (_flags: string[], _o: unknown, cmd: Command) => {
      // --data-root before the verb is the program's; one after it wins (it comes last).
      const root = program.getOptionValueSource("dataRoot") === "cli" ? ["--data-root", program.getOptionValue("dataRoot") as string] : [];
      // Through import.meta.url, not a literal: the CLI bundle must load dist/daemon-main.js, not
      // swallow the daemon into itself.
      const entry = new URL("../daemon-main.js", import.meta.url).href;
      const { daemonMain } = await importModule<typeof import("../daemon-main.js")>(entry);
      cli.ctx.exitCode = await daemonMain([...root, ...cmd.args]);
    });
};
