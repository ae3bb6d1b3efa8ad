// `berth pod create|ps|inspect|start|stop|kill|rm|checkpoint|restore|migrate` (podman's pod verbs, and
// CRIU checkpoints of a whole pod): one verb with subverbs.
import type { Command } from "commander";
import type { PodView } from "../contract/views.js";
import type { PodSpec, PortMapping } from "../shared/spec.js";
import { addResourceOptions, parseKeyValues, parsePublish, resourcesFromOptions } from "./args.js";
import { podTable } from "./format.js";
import { collect, enc, out, printJson, seconds, timeouts, type Json, type Register } from "./kit.js";
import { CRIU_REPLY_MS, checkpointRef } from "./checkpoint.js";

type CreateOpts = Json & { name?: string; publish?: PortMapping[]; ip?: string; network?: "none" | "bridge"; share?: string; label?: string[]; annotation?: string[]; memory?: number; cpus?: number; pidsLimit?: number };

const collectPorts = (s: string, prev: PortMapping[] = []) => [...prev, parsePublish(s)];

export const pod: Register = (program, cli, name) => {
  const p = cli.verb(program, name, "manage pods: containers that share network, IPC and UTS namespaces");
  const sub = (verb: string, description: string) => cli.verb(p, verb, description);

  addResourceOptions(sub("create", "create a pod; prints its id"), "the whole pod")
    .option("--name <name>", "pod name")
    .option("-p, --publish <[ip:]hostPort:port[/proto]>", "publish a port of the pod (repeatable)", collectPorts)
    .option("--ip <addr>", "the pod's IP on the bridge network")
    .option("--network <mode>", "bridge (default) or none")
    .option("--share <ns,...>", "namespaces the members share: net, ipc, uts (default all)")
    .option("-l, --label <k=v>", "label (repeatable)", collect)
    .option("--annotation <k=v>", "annotation (repeatable)", collect)
    .action(async (o: CreateOpts, cmd: Command) => {
      const spec: PodSpec = {};
      if (o.name) spec.name = o.name;
      if (o.network || o.ip || o.publish?.length) spec.network = { mode: o.network ?? "bridge", ...(o.ip ? { ip: o.ip } : {}), ...(o.publish?.length ? { ports: o.publish } : {}) };
      if (o.share) spec.share = o.share.split(",").map((s) => s.trim()).filter(Boolean);
      if (o.label?.length) spec.labels = parseKeyValues("label", o.label);
      if (o.annotation?.length) spec.annotations = parseKeyValues("annotation", o.annotation);
      const r = resourcesFromOptions(o);
      if (Object.keys(r).length) spec.resources = r;
      const res = await (await cli.client(cmd)).command<{ id: string }>("berth.cmd.pod.create", spec as Record<string, unknown>);
      if (o.json) printJson(res);
      else out(`${res.id}\n`);
    });

  sub("ps", "list pods")
    .option("-q, --quiet", "only ids")
    .action(async (o: Json & { quiet?: boolean }, cmd: Command) => {
      const r = await (await cli.client(cmd)).get<{ pods: PodView[] }>("/v1/pods");
      if (o.json) printJson(r.pods);
      else if (o.quiet) out(r.pods.map((x) => `${x.id}\n`).join(""));
      else out(podTable(r.pods));
    });

  sub("inspect", "show a pod as JSON")
    .argument("<ref>", "pod name or id")
    .action(async (ref: string, _o: Json, cmd: Command) => printJson(await (await cli.client(cmd)).get(`/v1/pods/${enc(ref)}`)));

  sub("start", "start every container of pods")
    .argument("<ref...>", "pod names or ids")
    .action(async (refs: string[], o: Json, cmd: Command) => {
      const c = await cli.client(cmd);
      await cli.each(refs, o, (id) => c.command("berth.cmd.pod.start", { id }));
    });

  sub("stop", "stop every container of pods")
    .option("-t, --timeout <seconds>", "seconds to wait before SIGKILL", seconds)
    .argument("<ref...>", "pod names or ids")
    .action(async (refs: string[], o: Json & { timeout?: number }, cmd: Command) => {
      const c = await cli.client(cmd);
      const t = timeouts(o.timeout);
      await cli.each(refs, o, (id) => c.command("berth.cmd.pod.stop", { id, ...(o.timeout !== undefined ? { timeoutSec: o.timeout } : {}), ...t.body }, t.ms));
    });

  sub("kill", "send a signal to every container of pods (default SIGKILL)")
    .option("-s, --signal <signal>", "signal name or number")
    .argument("<ref...>", "pod names or ids")
    .action(async (refs: string[], o: Json & { signal?: string }, cmd: Command) => {
      const c = await cli.client(cmd);
      await cli.each(refs, o, (id) => c.command("berth.cmd.pod.kill", { id, ...(o.signal ? { signal: o.signal } : {}) }));
    });

  sub("checkpoint", "checkpoint every container of a pod with CRIU at one point (all frozen, then each dumped); prints the pod checkpoint's id")
    .option("--leave-running", "let the pod's containers run on after the checkpoint")
    .option("--tcp-established", "checkpoint established TCP connections too")
    .option("--file-locks", "checkpoint file locks too")
    .argument("<ref>", "pod name or id")
    .action(async (ref: string, o: Json & { leaveRunning?: boolean; tcpEstablished?: boolean; fileLocks?: boolean }, cmd: Command) => {
      const body = { id: ref, ...(o.leaveRunning ? { leaveRunning: true } : {}), ...(o.tcpEstablished ? { tcpEstablished: true } : {}), ...(o.fileLocks ? { fileLocks: true } : {}) };
      const r = await (await cli.client(cmd)).command<{ checkpointId: string }>("berth.cmd.pod.checkpoint", body, CRIU_REPLY_MS);
      if (o.json) printJson(r);
      else out(`${r.checkpointId}\n`);
    });

  sub("restore", "bring a pod checkpoint back: into its pod (stopped), or, when the pod is gone or with --name, into a new pod")
    .option("--name <name>", "restore into a new pod of this name (new IP; its containers named <name>-<container>)")
    .argument("<id>", "the pod checkpoint's id, or a unique prefix of it (≥ 4 hex digits)")
    .action(async (id: string, o: Json & { name?: string }, cmd: Command) => {
      const checkpointId = checkpointRef(id);
      if (!checkpointId) return cmd.error(`error: '${id}' is not a checkpoint id: 4 to 64 hex digits (a unique prefix is enough)`, { exitCode: 2, code: "berth.usage" });
      const r = await (await cli.client(cmd)).command<{ id: string; name: string; state: string }>(
        "berth.cmd.pod.restore", { checkpointId, ...(o.name !== undefined ? { name: o.name } : {}) }, CRIU_REPLY_MS * 4,
      );
      if (o.json) printJson(r);
      else out(`${r.id} ${r.name} ${r.state}\n`);
    });

  sub("migrate", "move a pod and every container of it to another node with their memory state (a pod checkpoint here, restored there)")
    .option("--pre-copy", "pre-dump its containers' memory while they run first, so the final freeze is shorter (needs soft-dirty tracking)")
    .argument("<ref>", "pod name or id")
    .argument("<node>", "the node to move it to (berth node ls)")
    .action(async (ref: string, node: string, o: Json & { preCopy?: boolean }, cmd: Command) => {
      const r = await (await cli.client(cmd)).command<{ id: string; node: string; downtimeMs: number }>(
        "berth.cmd.pod.migrate", { id: ref, targetNode: node, ...(o.preCopy ? { preCopy: true } : {}) }, CRIU_REPLY_MS * 4,
      );
      if (o.json) printJson(r);
      else out(`${r.id} ${r.node} downtime ${r.downtimeMs} ms\n`);
    });

  sub("rm", "remove pods (-f: with their containers)")
    .option("-f, --force", "remove the pod's containers too")
    .argument("<ref...>", "pod names or ids")
    .action(async (refs: string[], o: Json & { force?: boolean }, cmd: Command) => {
      const c = await cli.client(cmd);
      await cli.each(refs, o, (id) => c.command("berth.cmd.pod.remove", { id, ...(o.force ? { force: true } : {}) }, 120_000));
    });
};
