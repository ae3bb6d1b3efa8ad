// The CLI's side of the wire: client.json, commands as NATS requests, queries over HTTP.
// One short-lived NATS connection per CLI run, opened on first use and always closed.
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { userInfo, hostname } from "node:os";
import { join } from "node:path";
import type { ClientConfig } from "../contract/client.js";
import { connect, credsAuthenticator, RequestError, TimeoutError, type NatsConnection } from "@nats-io/transport-node";

export type { ClientConfig };

/** An error as the daemon (or the wire) reports it: printed as `berth: <code>: <message>`. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export const DEFAULT_DATA_ROOT = "/var/lib/berth";
export const COMMAND_TIMEOUT_MS = 35_000;

export async function loadConfig(dataRoot: string): Promise<ClientConfig> {
  const path = join(dataRoot, "client.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
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

/** Who the daemon records as the actor of this CLI's commands. */
export function actor(): string {
  try {
    return `cli:${userInfo().username}@${hostname()}`;
  } catch {
    return `cli:uid${process.getuid?.() ?? "?"}@${hostname()}`;
  }
}

export class Client {
  private nc: NatsConnection | null = null;
  private readonly actor = actor();

  constructor(readonly cfg: ClientConfig) {}

  /** Send `berth.cmd.<noun>.<verb>` and return its result, or throw the daemon's error. */
  async command<T = Record<string, unknown>>(subject: string, body: Record<string, unknown>, timeoutMs = COMMAND_TIMEOUT_MS): Promise<T> {
    const nc = await this.connection();
    const payload = { ...body, meta: { actor: this.actor, requestId: randomUUID() } };
    let text: string;
    try {
      const m = await nc.request(subject, JSON.stringify(payload), { timeout: timeoutMs });
      text = m.string();
    } catch (err) {
      if (err instanceof RequestError && err.isNoResponders()) throw new CliError("Unavailable", `no daemon answers on ${subject}`);
      if (err instanceof TimeoutError || (err as Error).cause instanceof TimeoutError) {
        throw new CliError("Timeout", `no reply to ${subject} within ${Math.round(timeoutMs / 1000)} s`);
      }
      throw new CliError("Unavailable", `${subject}: ${(err as Error).message}`);
    }
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
    const res = await this.fetch(route, "application/json");
    return (await res.json()) as T;
  }

  async getText(route: string): Promise<string> {
    return (await this.fetch(route, "text/plain")).text();
  }

  /** Follow a Server-Sent Events route; resolves when the server ends the stream. */
  async stream(route: string, onEvent: (data: string, id: string | undefined) => void, signal?: AbortSignal): Promise<void> {
    const res = await this.fetch(route, "text/event-stream", signal);
    if (!res.body) return;
    const dec = new TextDecoder();
    let buf = "";
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += dec.decode(chunk, { stream: true });
        let i: number;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let id: string | undefined;
          const data: string[] = [];
          for (const line of frame.split("\n")) {
            if (line.startsWith("id:")) id = line.slice(3).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            else if (line.startsWith("event: error")) throw new CliError("Unavailable", "the event stream broke off");
          }
          if (data.length) onEvent(data.join("\n"), id);
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw err;
    }
  }

  async close(): Promise<void> {
    const nc = this.nc;
    this.nc = null;
    await nc?.close().catch(() => undefined);
  }

  private async connection(): Promise<NatsConnection> {
    if (this.nc) return this.nc;
    const { servers, user, pass, creds } = this.cfg.nats;
    try {
      this.nc = await connect({
        servers,
        ...(user !== undefined ? { user, pass } : {}),
        ...(creds ? { authenticator: credsAuthenticator(await readFile(creds)) } : {}),
        name: "berth-cli",
        timeout: 5_000,
        reconnect: false,
      });
    } catch (err) {
      throw new CliError("Unavailable", `cannot reach NATS at ${servers.join(", ")}: ${(err as Error).message} (is the daemon running?)`);
    }
    return this.nc;
  }

  private async fetch(route: string, accept: string, signal?: AbortSignal): Promise<Response> {
    const url = this.cfg.http.url.replace(/\/$/, "") + route;
    let res: Response;
    try {
      res = await fetch(url, { headers: { authorization: `Bearer ${this.cfg.http.token}`, accept }, signal });
    } catch (err) {
      const cause = (err as { cause?: Error }).cause;
      throw new CliError("Unavailable", `cannot reach ${this.cfg.http.url}: ${cause?.message ?? (err as Error).message} (is the daemon running?)`);
    }
    if (res.ok) return res;
    let error: { code?: string; message?: string } | undefined;
    try {
      error = ((await res.json()) as { error?: typeof error }).error;
    } catch {
      /* not our error body */
    }
    throw new CliError(error?.code ?? `HTTP${res.status}`, error?.message ?? `${res.status} ${res.statusText} from ${route}`);
  }
}
