// Queries over node:http. A plain request costs the CLI far less start-up than fetch(), whose
// undici is a large module compiled on first use. Responses stream: nothing here reads a body
// into memory unless asked to (readText), so `logs -f` and event streams can use `get` as is.
// Verbs reach it through Client (get, open, lines), which loads this file on first use:
// importing it at the top of a verb's file would load node:http for every verb.
import { request, type IncomingMessage } from "node:http";
import { importModule } from "./load.js";

export interface GetOptions {
  headers?: Record<string, string>;
  /** Aborting ends the request, or the body stream with an AbortError. */
  signal?: AbortSignal;
}

/** GET `url`; resolves with the response once its head is in (any status), the body unread. */
export async function get(url: string, o: GetOptions = {}): Promise<IncomingMessage> {
  const u = new URL(url);
  // https only for a query API behind a TLS proxy; node:https loads TLS, so only then.
  const req = u.protocol === "https:" ? (await importModule<typeof import("node:https")>("node:https")).request : request;
  return new Promise((resolve, reject) => {
    // agent: false, one connection per request: the CLI makes one or two, and an idle pooled
    // socket must not keep the process alive.
    const r = req(u, { method: "GET", headers: o.headers, signal: o.signal, agent: false }, resolve);
    r.once("error", reject);
    r.end();
  });
}

/** POST `body` (streamed) to `url`; resolves with the response once its head is in. */
export async function post(url: string, body: NodeJS.ReadableStream, o: GetOptions = {}): Promise<IncomingMessage> {
  const u = new URL(url);
  const req = u.protocol === "https:" ? (await importModule<typeof import("node:https")>("node:https")).request : request;
  return new Promise((resolve, reject) => {
    const r = req(u, { method: "POST", headers: o.headers, signal: o.signal, agent: false }, resolve);
    r.once("error", reject);
    body.once("error", (err) => r.destroy(err));
    body.pipe(r);
  });
}

/** The whole body as text (for bounded answers: JSON documents, `logs` without follow). */
export async function readText(res: IncomingMessage): Promise<string> {
  res.setEncoding("utf8");
  let s = "";
  for await (const chunk of res) s += chunk as string;
  return s;
}

/** The body's lines as they arrive, without their "\n"; a last line without one is yielded too. */
export async function* lines(res: IncomingMessage): AsyncGenerator<string> {
  res.setEncoding("utf8");
  let buf = "";
  for await (const chunk of res) {
    buf += chunk as string;
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}
