// The CLI's NATS side: one short-lived connection per run for commands. Loaded (import()) only by
// a verb that sends a command: queries never pay for the NATS client's start-up.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { connect, credsAuthenticator, RequestError, TimeoutError, type NatsConnection } from "@nats-io/transport-node";
import type { ClientConfig } from "../contract/client.js";
import { CliError } from "./errors.js";

export class NatsSession {
  private constructor(private readonly nc: NatsConnection) {}

  static async open(cfg: ClientConfig["nats"]): Promise<NatsSession> {
    const { servers, user, pass, creds } = cfg;
    try {
      return new NatsSession(
        await connect({
          servers,
          ...(user !== undefined ? { user, pass } : {}),
          ...(creds ? { authenticator: credsAuthenticator(readFileSync(creds)) } : {}),
          name: "berth-cli",
          timeout: 5_000,
          reconnect: false,
        }),
      );
    } catch (err) {
      throw new CliError("Unavailable", `cannot reach NATS at ${servers.join(", ")}: ${(err as Error).message} (is the daemon running?)`);
    }
  }

  /** A new request id (node:crypto is loaded with this file, not by every verb). */
  requestId(): string {
    return randomUUID();
  }

  /** A request's reply as text; no responder, a timeout or a broken connection as a CliError. */
  async request(subject: string, payload: string, timeoutMs: number): Promise<string> {
    try {
      return (await this.nc.request(subject, payload, { timeout: timeoutMs })).string();
    } catch (err) {
      if (err instanceof RequestError && err.isNoResponders()) throw new CliError("Unavailable", `no daemon answers on ${subject}`);
      if (err instanceof TimeoutError || (err as Error).cause instanceof TimeoutError) {
        throw new CliError("Timeout", `no reply to ${subject} within ${Math.round(timeoutMs / 1000)} s`);
      }
      throw new CliError("Unavailable", `${subject}: ${(err as Error).message}`);
    }
  }

  async close(): Promise<void> {
    await this.nc.close().catch(() => undefined);
  }
}
