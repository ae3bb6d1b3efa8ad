// `berth logs [-f] [--since X] [-t] [--tail N] REF`: the container's output, written to stdout as
// it arrives. A plain node:http GET (no fetch/undici start-up cost); the daemon streams the text.
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import { CliError, type ClientConfig } from "./client.js";

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

/** GET `route` and hand each chunk of the body to `write` as it comes; the daemon's error as a CliError. */
export function streamText(http: ClientConfig["http"], route: string, write: (chunk: Buffer) => void): Promise<void> {
  const url = new URL(http.url.replace(/\/$/, "") + route);
  const request = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise<void>((resolve, reject) => {
    const req = request(url, { headers: { authorization: `Bearer ${http.token}`, accept: "text/plain" } }, (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (d: string) => (body += d.length < 65536 ? d : ""));
        res.on("end", () => {
          let error: { code?: string; message?: string } | undefined;
          try {
            error = (JSON.parse(body) as { error?: typeof error }).error;
          } catch {
            /* not our error body */
          }
          reject(new CliError(error?.code ?? `HTTP${res.statusCode}`, error?.message ?? `${res.statusCode} ${res.statusMessage} from ${url.pathname}`));
        });
        return;
      }
      res.on("data", write);
      res.on("end", () => (res.complete ? resolve() : reject(new CliError("Unavailable", "the log stream broke off"))));
      res.on("error", (err) => reject(new CliError("Unavailable", `the log stream broke off: ${err.message}`)));
    });
    req.on("error", (err) => reject(new CliError("Unavailable", `cannot reach ${http.url}: ${err.message} (is the daemon running?)`)));
    req.end();
  });
}

/** The verb: text straight through, or with --json `{lines}` (one JSON string per line when following). */
export async function runLogs(cfg: ClientConfig, ref: string, o: LogsOptions, out: (s: string | Buffer) => void): Promise<void> {
  const route = logsRoute(ref, o);
  if (!o.json) return streamText(cfg.http, route, out);
  let rest = "";
  const lines: string[] = [];
  await streamText(cfg.http, route, (chunk) => {
    const parts = (rest + chunk.toString("utf8")).split("\n");
    rest = parts.pop()!;
    if (o.follow) for (const l of parts) out(JSON.stringify(l) + "\n");
    else lines.push(...parts);
  });
  if (!o.follow) out(JSON.stringify({ lines }, null, 2) + "\n");
}
