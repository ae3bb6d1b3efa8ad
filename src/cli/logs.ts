// `berth logs [-f] [--since X] [-t] [--tail N] REF`: the container's output, written to stdout as
// it arrives, through the client's one streamed GET (node:http); the daemon streams the text.
import type { Client } from "./client.js";

export interface LogsOptions {
  follow?: boolean;
  since?: string;
  timestamps?: boolean;
  /** A count or `all`, checked by the daemon (0 to 1000000). */
  tail?: string;
  json?: boolean;
}

export function logsRoute(ref: string, o: LogsOptions): string {
  const q = new URLSearchParams();
  if (o.tail !== undefined) q.set("tail", o.tail);
  if (o.since !== undefined) q.set("since", o.since);
  if (o.timestamps) q.set("timestamps", "true");
  if (o.follow) q.set("follow", "true");
  return `/v1/containers/${encodeURIComponent(ref)}/logs${q.size ? `?${q}` : ""}`;
}

/** The verb: text straight through, or with --json `{lines}` (one JSON string per line when following). */
export async function runLogs(client: Client, ref: string, o: LogsOptions, out: (s: string | Buffer) => void): Promise<void> {
  const route = logsRoute(ref, o);
  if (!o.json) {
    for await (const chunk of await client.open(route, "text/plain")) out(chunk as Buffer);
    return;
  }
  const lines: string[] = [];
  for await (const l of client.lines(route, "text/plain")) {
    if (o.follow) out(JSON.stringify(l) + "\n");
    else lines.push(l);
  }
  if (!o.follow) out(JSON.stringify({ lines }, null, 2) + "\n");
}
