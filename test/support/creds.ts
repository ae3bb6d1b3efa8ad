// The NATS credentials a test uses to act as the daemon (e.g. to publish forged events with the
// daemon's own rights). One place, so that splitting NATS users into roles changes only this.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, type NatsConnection } from "@nats-io/transport-node";

export async function daemonNatsCredentials(dataRoot: string): Promise<{ user: string; pass: string }> {
  const s = JSON.parse(await readFile(join(dataRoot, "secrets.json"), "utf8")) as { natsUser: string; natsPass: string };
  return { user: s.natsUser, pass: s.natsPass };
}

export async function connectAsDaemon(dataRoot: string, servers: string[]): Promise<NatsConnection> {
  return connect({ servers, ...(await daemonNatsCredentials(dataRoot)), maxReconnectAttempts: -1 });
}
