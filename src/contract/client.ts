// The client side of the contract (API.md): what <data-root>/client.json holds, the command
// subjects and the reply envelope. Clients (the CLI, scripts) need nothing else of berth's code.
export { ErrorCode } from "../shared/errors.js";

export interface ClientConfig {
  node: string;
  /** `creds`: a NATS credentials file, for an external NATS. */
  nats: { servers: string[]; user?: string; pass?: string; creds?: string };
  http: { url: string; token: string };
}

/** Commands are requests on `berth.cmd.<noun>.<verb>`. */
export const CMD_PREFIX = "berth.cmd";
/** `berth.fwd.<node>.<verb>`: a command a daemon got for another node's container or pod, handed to that node's daemon. */
export const FORWARD = "berth.fwd";
export const commandSubject = (nounVerb: string) => `${CMD_PREFIX}.${nounVerb}`;

/** Every command's reply. */
export type Reply<T = unknown> = { ok: true; result: T } | { ok: false; error: { code: string; message: string } };
