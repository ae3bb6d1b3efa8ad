// NATS connections as one of a daemon's three roles (src/runtime/nats-roles.ts), with the
// credentials that daemon keeps in its data root: secrets.json (the daemon's, 0600),
// client.json, auditor.json. Tests that read or write the stream directly act as the daemon;
// the client's credentials reach only berth.cmd.>.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import type { AuditorConfig, ClientConfig, Secrets } from "../../src/config.js";
import { DAEMON_INBOX_PREFIX, type Role } from "../../src/runtime/nats-roles.js";

const readJson = async <T>(path: string) => JSON.parse(await readFile(path, "utf8")) as T;

export const secretsOf = (dataRoot: string) => readJson<Secrets>(join(dataRoot, "secrets.json"));

/** user/pass (and the daemon's inbox prefix) of `role`, from the files the daemon wrote. */
export async function credsOf(dataRoot: string, role: Role): Promise<{ servers: string[]; user: string; pass: string; inboxPrefix?: string }> {
  const client = await readJson<ClientConfig>(join(dataRoot, "client.json"));
  if (role === "client") return { servers: client.nats.servers, user: client.nats.user!, pass: client.nats.pass! };
  if (role === "auditor") {
    const a = await readJson<AuditorConfig>(join(dataRoot, "auditor.json"));
    return { servers: a.nats.servers, user: a.nats.user, pass: a.nats.pass };
  }
  const s = await secretsOf(dataRoot);
  return { servers: client.nats.servers, user: s.natsUser, pass: s.natsPass, inboxPrefix: DAEMON_INBOX_PREFIX };
}

export async function connectAs(dataRoot: string, role: Role, opts: Partial<ConnectionOptions> = {}): Promise<NatsConnection> {
  return connect({ ...(await credsOf(dataRoot, role)), ...opts });
}
