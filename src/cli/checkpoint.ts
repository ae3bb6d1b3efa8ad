// `berth checkpoint REF | ls | rm ID…` and `berth restore ID`: CRIU checkpoints of containers
// (docs/API.md, `berth.cmd.container.checkpoint`, `…restore`, `berth.cmd.checkpoint.remove`,
// `GET /v1/checkpoints`). `checkpoint` is one command whose first word is checked: `ls` and `rm`
// are its sub-verbs, anything else is the container to checkpoint (so a container named `ls` or
// `rm` is checkpointed by its id).
import type { Command } from "commander";
import { CliError } from "./client.js";
import { importModule } from "./load.js";
import type { CheckpointView } from "../contract/views.js";
import { ago, shortId, table } from "./format.js";
import { out, printJson, type Json, type Register } from "./kit.js";

/**
 * The reply deadline of a checkpoint or a restore: the daemon gives CRIU 300 s (its own deadline,
 * whatever the body says); a little more here, so that its Timeout reply comes before ours.
 */
export const CRIU_REPLY_MS = 310_000;

export interface CheckpointOptions extends Json {
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  preDump?: boolean;
  container?: string;
  export?: string;
}

/** What the words after `checkpoint` ask for; `usage` with the reason when they make no sense. */
export type CheckpointForm =
  | { form: "create"; ref: string; body: { id: string; leaveRunning?: true; tcpEstablished?: true; fileLocks?: true; preDump?: true } }
  | { form: "ls"; route: string }
  | { form: "rm"; ids: string[] }
  | { form: "usage"; message: string };

const CHECKPOINT_ID = /^[0-9a-f]{4,64}$/;

/** A checkpoint id as the daemon takes it (full, or a prefix of ≥ 4 hex digits), lower-cased; undefined if it is none. */
export function checkpointRef(s: string): string | undefined {
  const t = s.trim().toLowerCase();
  return CHECKPOINT_ID.test(t) ? t : undefined;
}

const notAnId = (s: string) => `'${s}' is not a checkpoint id: 4 to 64 hex digits (a unique prefix is enough)`;

/** `checkpoint`'s arguments (`first` and the words after it) and options → the form it is. */
export function checkpointForm(first: string, rest: readonly string[], o: CheckpointOptions): CheckpointForm {
  const usage = (message: string): CheckpointForm => ({ form: "usage", message });
  const criuFlags = [o.leaveRunning && "--leave-running", o.tcpEstablished && "--tcp-established", o.fileLocks && "--file-locks", o.preDump && "--pre-dump"].filter(
    (f): f is string => typeof f === "string",
  );
  if (first === "ls") {
    if (rest.length) return usage(`checkpoint ls takes no arguments (got ${rest.join(" ")}); --container REF for one container's`);
    if (criuFlags.length) return usage(`${criuFlags.join(", ")}: only for checkpointing a container, not for ls`);
    return { form: "ls", route: `/v1/checkpoints${o.container ? `?${new URLSearchParams({ container: o.container })}` : ""}` };
  }
  if (first === "rm") {
    if (!rest.length) return usage("checkpoint rm needs the ids of the checkpoints to remove");
    const flags = [...criuFlags, ...(o.container !== undefined ? ["--container"] : [])];
    if (flags.length) return usage(`${flags.join(", ")}: not for rm`);
    const ids: string[] = [];
    for (const s of rest) {
      const id = checkpointRef(s);
      if (!id) return usage(notAnId(s));
      ids.push(id);
    }
    return { form: "rm", ids };
  }
  if (rest.length) return usage(`checkpoint takes one container, not ${rest.length + 1} (ls and rm are its only sub-verbs)`);
  if (o.container !== undefined) return usage("--container is for checkpoint ls");
  if (o.preDump && o.export !== undefined) return usage("a pre-dump makes no archive to --export: export the checkpoint that follows it");
  return {
    form: "create",
    ref: first,
    body: {
      id: first, ...(o.leaveRunning ? { leaveRunning: true } : {}), ...(o.tcpEstablished ? { tcpEstablished: true } : {}), ...(o.fileLocks ? { fileLocks: true } : {}),
      ...(o.preDump ? { preDump: true } : {}),
    },
  };
}

/** docker's sizes: `512B`, `1.2kB`, `34.5MB`, `123MB` (powers of 1000). */
export function humanSize(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (i < units.length - 1 && Math.round((n / 1000 ** i) * 10) / 10 >= 1000) i++;
  const v = n / 1000 ** i;
  return `${i === 0 ? Math.round(v) : v < 99.95 ? v.toFixed(1) : v.toFixed(0)}${units[i]}`;
}

export function checkpointTable(cps: readonly CheckpointView[], now = Date.now()): string {
  return table(
    ["CHECKPOINT ID", "CONTAINER", "POD", "NODE", "SIZE", "FROZEN", "CREATED"],
    cps.map((c) => [
      shortId(c.checkpointId), c.kind === "pod" ? `(${c.members?.length ?? 0} members)` : c.containerName ?? "-", c.podName ?? (c.pod ? shortId(c.pod) : "-"),
      c.node, humanSize(c.sizeBytes), `${c.frozenMs}ms`, ago(c.createdAt, now),
    ]),
  );
}

const FORMS = `
Forms:
  berth checkpoint [--leave-running] [--tcp-established] [--file-locks] [--export F] REF
      checkpoint the running (or paused) container REF (name or id) with CRIU; prints the
      checkpoint's id. The container is exited (and marked checkpointed) after it, unless
      --leave-running.
  berth checkpoint --pre-dump REF
      dump REF's memory while it runs on; its next checkpoint is made on top of it and freezes
      it for less time (needs the kernel's soft-dirty tracking)
  berth checkpoint ls [--container REF]
      list the checkpoints (only REF's with --container)
  berth checkpoint rm ID...
      remove checkpoints, by id or a unique prefix of one (≥ 4 hex digits)

ls and rm are sub-verbs: checkpoint a container named ls or rm by its id.
Bring a checkpoint back with: berth restore [--name N] ID`;

interface CheckpointReply {
  id: string;
  checkpointId: string;
  sizeBytes: number;
  durationMs: number;
  frozenMs: number;
}

export const checkpoint: Register = (program, cli, name) =>
  cli
    .verb(program, name, "checkpoint a running container with CRIU (its processes and rw layer, into the object store); or list (ls) or remove (rm) checkpoints")
    .usage("[options] REF | ls [--container REF] | rm ID...")
    .option("--leave-running", "keep the container running after the checkpoint")
    .option("--tcp-established", "checkpoint established TCP connections too")
    .option("--file-locks", "checkpoint file locks too")
    .option("--pre-dump", "only dump the memory, the container runs on; the next checkpoint builds on it")
    .option("--container <ref>", "with ls: only this container's checkpoints")
    .option("--export <file>", "also write the checkpoint's archive to this file (.tar.gz), as podman does")
    .argument("<ref|ls|rm>", "the container to checkpoint (name or id), or ls, or rm")
    .argument("[id...]", "with rm: the checkpoints to remove")
    .addHelpText("after", FORMS)
    .action(async (first: string, rest: string[], o: CheckpointOptions, cmd: Command) => {
      const f = checkpointForm(first, rest, o);
      if (f.form === "usage") return cmd.error(`error: ${f.message}`, { exitCode: 2, code: "berth.usage" });
      const c = await cli.client(cmd);
      if (f.form === "create") {
        const r = await c.command<CheckpointReply>("berth.cmd.container.checkpoint", f.body, CRIU_REPLY_MS);
        if (o.export) await exportTo(await c.open(`/v1/checkpoints/${r.checkpointId}/archive`, "application/x-tar"), o.export);
        if (o.json) printJson(r);
        else out(o.preDump ? `pre-dump of ${r.id.slice(0, 12)}: frozen ${r.frozenMs} ms\n` : `${r.checkpointId}\n`);
      } else if (f.form === "ls") {
        const r = await c.get<{ checkpoints: CheckpointView[] }>(f.route);
        if (o.json) printJson(r.checkpoints);
        else out(checkpointTable(r.checkpoints));
      } else {
        await cli.each(f.ids, o, (checkpointId) => c.command("berth.cmd.checkpoint.remove", { checkpointId }));
      }
    });

/** The archive (a tar stream) gzipped into `file`, whole or not at all. */
async function exportTo(res: NodeJS.ReadableStream, file: string): Promise<void> {
  const [{ createWriteStream }, { rename, rm }, { pipeline }, { createGzip }] = await Promise.all([
    importModule<typeof import("node:fs")>("node:fs"), importModule<typeof import("node:fs/promises")>("node:fs/promises"),
    importModule<typeof import("node:stream/promises")>("node:stream/promises"), importModule<typeof import("node:zlib")>("node:zlib"),
  ]);
  const tmp = `${file}.part`;
  try {
    await pipeline(res, createGzip(), createWriteStream(tmp, { mode: 0o600 }));
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** Upload an exported archive (gzipped or not) as a checkpoint of the daemon's node. */
async function importFrom(c: Awaited<ReturnType<Parameters<Register>[1]["client"]>>, file: string): Promise<{ checkpointId: string; containerName: string }> {
  const [{ createReadStream }, { open }, { createGunzip }] = await Promise.all([
    importModule<typeof import("node:fs")>("node:fs"), importModule<typeof import("node:fs/promises")>("node:fs/promises"),
    importModule<typeof import("node:zlib")>("node:zlib"),
  ]);
  const fh = await open(file, "r").catch((err: Error) => {
    throw new CliError("InvalidArgument", `cannot read ${file}: ${err.message}`);
  });
  const magic = Buffer.alloc(2);
  await fh.read(magic, 0, 2, 0);
  await fh.close();
  const raw = createReadStream(file);
  const body = magic[0] === 0x1f && magic[1] === 0x8b ? raw.pipe(createGunzip()) : raw;
  return c.upload("/v1/checkpoints", "application/x-tar", body);
}

export const restore: Register = (program, cli, name) =>
  cli
    .verb(program, name, "bring a checkpoint's processes back: into its own container (which must not be running), or with --name into a new one")
    .option("--name <name>", "restore into a new container of this name (a new id and IP, the checkpointed container's spec)")
    .option("--import <file>", "restore from an archive written by checkpoint --export (into a new container: its old name, or --name)")
    .argument("[id]", "the checkpoint's id, or a unique prefix of it (≥ 4 hex digits)")
    .action(async (id: string | undefined, o: Json & { name?: string; import?: string }, cmd: Command) => {
      if ((id === undefined) === (o.import === undefined)) return cmd.error("error: restore takes a checkpoint id or --import FILE", { exitCode: 2, code: "berth.usage" });
      let checkpointId = id === undefined ? undefined : checkpointRef(id);
      if (id !== undefined && !checkpointId) return cmd.error(`error: ${notAnId(id)}`, { exitCode: 2, code: "berth.usage" });
      const c = await cli.client(cmd);
      let restoreAs = o.name;
      if (o.import !== undefined) {
        const imported = await importFrom(c, o.import);
        checkpointId = imported.checkpointId;
        restoreAs ??= imported.containerName;
      }
      const r = await c.command<{ id: string; name: string; state: string; pid: number | null }>(
        "berth.cmd.container.restore",
        { checkpointId: checkpointId!, ...(restoreAs !== undefined ? { name: restoreAs } : {}) },
        CRIU_REPLY_MS,
      );
      if (o.json) printJson(r);
      else out(`${r.id} ${r.name} ${r.state}\n`);
    });
