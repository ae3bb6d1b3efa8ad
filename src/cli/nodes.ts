// `berth node ls`: the nodes the log knows (NodeStarted) and whether their daemons answer.
import type { Command } from "commander";
import { ago, table } from "./format.js";
import { out, printJson, type Json, type Register } from "./kit.js";

interface NodeRow {
  name: string;
  httpUrl: string;
  version: string;
  startedAt: string;
  up: boolean;
  lastSeen: string | null;
}

export function nodeTable(nodes: readonly NodeRow[], now = Date.now()): string {
  return table(
    ["NODE", "STATUS", "LAST SEEN", "STARTED", "VERSION", "HTTP"],
    nodes.map((n) => [n.name, n.up ? "up" : "down", n.lastSeen ? ago(n.lastSeen, now) : "-", ago(n.startedAt, now), n.version, n.httpUrl]),
  );
}

export const node: Register = (program, cli, name) => {
  const group = program.command(name).description("the cluster's nodes");
  cli.verb(group, "ls", "list the nodes: up or down, last heartbeat").action(async (o: Json, cmd: Command) => {
    const r = await (await cli.client(cmd)).get<{ nodes: NodeRow[] }>("/v1/nodes");
    if (o.json) printJson(r.nodes);
    else out(nodeTable(r.nodes));
  });
};
