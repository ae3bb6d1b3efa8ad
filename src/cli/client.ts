// The CLI's side of the wire: client.json, commands as NATS requests, queries over HTTP.
// One short-lived NATS connection per CLI run, opened on first use and always closed. The NATS
// client is loaded only then (nats.ts), node:http only for a query (http.ts).
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { userInfo, hostname } from "node:os";
import { join } from "node:path";
import type { ClientConfig } from "../contract/client.js";
import { CliError } from "./errors.js";
import type { NatsSession } from "./nats.js";

export type { ClientConfig };

export { CliError };

export const DEFAULT_DATA_ROOT = "/var/lib/berth";
export const COMMAND_TIMEOUT_MS = 35_000;

export async function loadConfig(dataRoot: string): Promise<ClientConfig> {
  const path = join(dataRoot, "client.json");
  let text: string;
  try {
    // Sync: node:fs is loaded with Node itself, node:fs/promises is not.
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CliError("Unavailable", `is the daemon running? no ${path}`);
    if (code === "EACCES") throw new CliError("Unavailable", `cannot read ${path}: permission denied`);
    throw new CliError("Unavailable", `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    const c = JSON.parse(text) as ClientConfig;
    if (!Array.isArray(c.nats?.servers) || typeof c.http?.url !== "string" || typeof c.http?.token !== "string") throw new Error("fields missing");
    return c;
  } catch (err) {
    throw new CliError("Internal", `${path} is not a berth client file: ${(err as Error).message}`);
  }
}

/** node:http and its stream modules, loaded by the first query: a command verb never needs them. */
const loadHttp = () => import("./http.js");

/** Who the daemon records as the actor of this CLI's commands. */
export function actor(): string {
  try {
    return `cli:${userInfo().username}@${hostname()}`;
  } catch {
    return `cli:uid${process.getuid?.() ?? "?"}@${hostname()}`;
  }
}

export class Client {
  private nats: Promise<NatsSession> | null = null;
  private actor?: string;

  constructor(readonly cfg: ClientConfig) {}

  /** Send `berth.cmd.<noun>.<verb>` and return its result, or throw the daemon's error. */
  async command<T = Record<string, unknown>>(subject: string, body: Record<string, unknown>, timeoutMs = COMMAND_TIMEOUT_MS): Promise<T> {
    const nc = await this.connection();
    const payload = { ...body, meta: { actor: (this.actor ??= actor()), requestId: nc.requestId() } };
    const text = await nc.request(subject, JSON.stringify(payload), timeoutMs);
    let reply: { ok?: boolean; result?: T; error?: { code?: string; message?: string } };
    try {
      reply = JSON.parse(text);
    } catch {
      throw new CliError("Internal", `${subject}: the reply is not JSON`);
    }
    if (reply.ok) return reply.result as T;
    throw new CliError(reply.error?.code ?? "Internal", reply.error?.message ?? "the daemon gave no reason");
  }

  /** GET a JSON route of the query API. */
  async get<T = unknown>(route: string): Promise<T> {
    const text = await (await loadHttp()).readText(await this.open(route, "application/json"));
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CliError("Internal", `${route}: the answer is not JSON`);
    }
  }

  /**
   * GET a route of the query API with the client's token and return the response, its body
   * unread, to stream (`for await (const chunk of res)`, or `lines` below); a status other than
   * 2xx is thrown as the daemon's error (`berth: <code>: <message>`). Aborting `signal` ends it.
   */
  async open(route: string, accept: string, signal?: AbortSignal, upload?: { contentType: string; body: NodeJS.ReadableStream }): Promise<IncomingMessage> {
    const http = await loadHttp();
    const url = this.cfg.http.url.replace(/\/$/, "") + route;
    let res: IncomingMessage;
    try {
      const headers = { authorization: `Bearer ${this.cfg.http.token}`, accept };
      res = upload
        ? await http.post(url, upload.body, { headers: { ...headers, "content-type": upload.contentType }, signal })
        : await http.get(url, { headers, signal });
    } catch (err) {
      throw new CliError("Unavailable", `cannot reach ${this.cfg.http.url}: ${(err as Error).message} (is the daemon running?)`);
    }
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    let error: { code?: string; message?: string } | undefined;
    try {
      error = (JSON.parse(await http.readText(res)) as { error?: typeof error }).error;
    } catch {
      /* not our error body */
    }
    throw new CliError(error?.code ?? `HTTP${status}`, error?.message ?? `${status} ${res.statusMessage ?? ""} from ${route}`);
  }

  /** POST a body (streamed) to a route of the API; its JSON answer, or the daemon's error thrown. */
  async upload<T = unknown>(route: string, contentType: string, body: NodeJS.ReadableStream): Promise<T> {
    const text = await (await loadHttp()).readText(await this.open(route, "application/json", undefined, { contentType, body }));
    return JSON.parse(text) as T;
  }

  /**
   * The lines of a streamed route as they arrive (e.g. `logs -f`), without their "\n"; ends with
   * the response. Aborting `signal` ends it early with an AbortError.
   */
  async *lines(route: string, accept: string, signal?: AbortSignal): AsyncGenerator<string> {
    const res = await this.open(route, accept, signal);
    yield* (await loadHttp()).lines(res);
  }

  /** Follow a Server-Sent Events route; resolves when the server ends the stream. */
  async stream(route: string, onEvent: (data: string, id: string | undefined) => void, signal?: AbortSignal): Promise<void> {
    let id: string | undefined;
    let data: string[] = [];
    try {
      for await (const line of this.lines(route, "text/event-stream", signal)) {
        if (line === "") {
          if (data.length) onEvent(data.join("\n"), id);
          id = undefined;
          data = [];
        } else if (line.startsWith("id:")) id = line.slice(3).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        else if (line.startsWith("event: error")) throw new CliError("Unavailable", "the event stream broke off");
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    const nats = this.nats;
    this.nats = null;
    await (await nats?.catch(() => null))?.close();
  }

  private connection(): Promise<NatsSession> {
    return (this.nats ??= import("./nats.js").then(({ NatsSession }) => NatsSession.open(this.cfg.nats)));
  }
}
