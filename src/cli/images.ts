// `berth image import|ls|rm`.
import type { Command } from "commander";
import { ago, bytes, shortId, table } from "./format.js";
import { out, printJson, type Json, type Register } from "./kit.js";

/** `image`, a group: its subcommands are registered with it. */
export const image: Register = (program, cli, name) => {
  const image = program.command(name).description("manage images");
  cli
    .verb(image, "import", "import an image: oci-archive:PATH, docker-archive:PATH or oci:DIR[:TAG]")
    .argument("<source>", "where the image is")
    .option("--name <name>", "the name to give it, e.g. app:1.0")
    .action(async (source: string, o: Json & { name?: string }, cmd: Command) => {
      const r = await (await cli.client(cmd)).command<{ name: string; digest: string }>("berth.cmd.image.import", { source, ...(o.name ? { name: o.name } : {}) });
      if (o.json) printJson(r);
      else out(`${r.name} ${r.digest}\n`);
    });
  cli
    .verb(image, "ls", "list images")
    .option("--node <node>", "only this node's")
    .action(async (o: Json & { node?: string }, cmd: Command) => {
      type Img = { name: string; digest: string; sizeBytes: number; node: string; importedAt: string };
      const r = await (await cli.client(cmd)).get<{ images: Img[] }>("/v1/images");
      const images = r.images.filter((i) => !o.node || i.node === o.node);
      if (o.json) printJson(images);
      else out(table(["NAME", "DIGEST", "SIZE", "NODE", "IMPORTED"], images.map((i) => [i.name, "sha256:" + shortId(i.digest.replace(/^sha256:/, "")), bytes(i.sizeBytes), i.node, ago(i.importedAt)])));
    });
  cli
    .verb(image, "rm", "remove images")
    .argument("<name...>", "image names")
    .action(async (names: string[], o: Json, cmd: Command) => {
      const c = await cli.client(cmd);
      await cli.each(names, o, (name) => c.command("berth.cmd.image.remove", { name }));
    });
};
