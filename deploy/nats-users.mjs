#!/usr/bin/env node
// The users of a shared NATS cluster, each with its own password (issue 10, story 7): one daemon
// user per node, `berth-<node>` (its permissions: src/runtime/nats-roles.ts nodeDaemonPermissions),
// one client user per name given, `berth-client-<name>`, and an auditor. Needs `npm run build`.
//
//   node deploy/nats-users.mjs --nodes n1,n2,n3 [--clients alice,ci] --out DIR
//
// Writes, each 0600 (an existing file is kept, so the passwords stay across runs):
//   DIR/users.conf         the authorization block, to include in every server's config
//                          (deploy/nats-cluster.sh does with BERTH_CLUSTER_AUTH=DIR/users.conf)
//   DIR/credentials.json   {nodes: {n1: {user, pass}, …}, clients: {alice: {…}}, auditor: {…}}
// A daemon logs in with its node's user in its URL: --nats-url nats://berth-n1:<pass>@host:port,…
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const roles = await import(fileURLToPath(new URL("../dist/runtime/nats-roles.js", import.meta.url))).catch(() => {
  console.error("nats-users: dist/ is missing: run npm run build first");
  process.exit(1);
});
const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const names = (s) => (s ?? "").split(",").map((x) => x.trim()).filter(Boolean);
const nodes = names(arg("--nodes"));
const clients = names(arg("--clients") ?? "default");
const out = arg("--out");
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$/;
if (!nodes.length || !out) {
  console.error("usage: node deploy/nats-users.mjs --nodes n1,n2,n3 [--clients a,b] --out DIR");
  process.exit(2);
}
for (const n of [...nodes, ...clients]) {
  // No dots: a name is one subject token in the permissions (berth.fwd.<node>.>).
  if (!NAME.test(n)) {
    console.error(`nats-users: '${n}' is not a valid name (letters, digits, _ and -)`);
    process.exit(2);
  }
}
mkdirSync(out, { recursive: true, mode: 0o700 });
const credsFile = join(out, "credentials.json");
const old = existsSync(credsFile) ? JSON.parse(readFileSync(credsFile, "utf8")) : { nodes: {}, clients: {} };
const pass = () => randomBytes(24).toString("base64url");
const creds = {
  nodes: Object.fromEntries(nodes.map((n) => [n, old.nodes?.[n] ?? { user: `berth-${n}`, pass: pass() }])),
  clients: Object.fromEntries(clients.map((c) => [c, old.clients?.[c] ?? { user: `berth-client-${c}`, pass: pass() }])),
  auditor: old.auditor ?? { user: "berth-auditor", pass: pass() },
};
const text = roles.clusterAuthorizationText({ nodes: creds.nodes, clients: Object.values(creds.clients), auditors: [creds.auditor] });
writeFileSync(join(out, "users.conf"), `# Written by berth deploy/nats-users.mjs: one daemon user per node, the clients, an auditor.\n${text}\n`, { mode: 0o600 });
writeFileSync(credsFile, JSON.stringify(creds, null, 2) + "\n", { mode: 0o600 });
console.log(`${join(out, "users.conf")} and ${credsFile}: ${nodes.length} node user(s), ${clients.length} client(s), an auditor`);
