// The three NATS users of a berth installation and what each may publish and subscribe to
// (DESIGN.md "the log is a trust boundary"). The embedded server's config is built from these,
// and deploy/nats-berth-users.conf carries the same blocks for an external server (a unit test
// keeps the two equal). Subjects are spelled out here, not imported: the runtime layer imports
// no events or api module; test/unit/nats-roles.spec.ts checks them against those modules.

export type Role = "daemon" | "client" | "auditor";

export interface NatsCred {
  user: string;
  pass: string;
}

export interface Permissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

const STREAM = "BERTH_EVENTS";
const EVENTS = "berth.ev.>";
const COMMANDS = "berth.cmd.>";
/** Commands a daemon hands to the daemon of the node that owns their target (contract FORWARD). */
const FORWARDS = "berth.fwd.>";

/**
 * The daemon's inbox prefix (nats.js `inboxPrefix`). Its replies, consumer deliveries and KV
 * reads arrive there, out of reach of clients and auditors, who may subscribe only to `_INBOX.>`
 * (a different first token).
 */
export const DAEMON_INBOX_PREFIX = "_INBOX_berthd";

export const ROLE_PERMISSIONS: Record<Role, Permissions> = {
  daemon: {
    publish: {
      // The JetStream API for the stream, its KV buckets (berth_requests, berth_snapshots) and
      // later object stores; events; acks and flow control of its consumers; replies to clients.
      // Commands it hands to the daemon of the node that owns their target (FORWARDS).
      // Replies to other daemons too: a command handed over is answered in its sender's inbox.
      allow: ["$JS.API.>", "$KV.>", "$O.>", EVENTS, "$JS.ACK.>", "$JS.FC.>", "_INBOX.>", `${DAEMON_INBOX_PREFIX}.>`, FORWARDS],
      // Purge and message delete are refused by the stream itself (deny_purge, deny_delete);
      // deleting the whole stream no stream setting can refuse, so the daemon may not ask.
      deny: [`$JS.API.STREAM.DELETE.${STREAM}`],
    },
    subscribe: { allow: [COMMANDS, `${DAEMON_INBOX_PREFIX}.>`, FORWARDS] },
  },
  client: {
    // Requests only. Not a subscriber of berth.cmd.> (it would take commands out of the daemons'
    // queue group), nothing of JetStream, no events.
    publish: { allow: [COMMANDS] },
    subscribe: { allow: ["_INBOX.>"] },
  },
  auditor: {
    // Reading BERTH_EVENTS with ordered or ephemeral consumers and direct gets: nothing that
    // writes the log, deletes or changes the stream, or deletes consumers (the daemon's own
    // among them; the auditor's expire when idle).
    publish: {
      allow: [
        "$JS.API.INFO",
        `$JS.API.STREAM.INFO.${STREAM}`,
        `$JS.API.STREAM.MSG.GET.${STREAM}`,
        `$JS.API.DIRECT.GET.${STREAM}`,
        `$JS.API.DIRECT.GET.${STREAM}.>`,
        `$JS.API.CONSUMER.CREATE.${STREAM}`,
        `$JS.API.CONSUMER.CREATE.${STREAM}.>`,
        `$JS.API.CONSUMER.INFO.${STREAM}.*`,
        `$JS.API.CONSUMER.MSG.NEXT.${STREAM}.*`,
        `$JS.ACK.${STREAM}.>`,
        `$JS.FC.${STREAM}.>`,
      ],
    },
    subscribe: { allow: ["_INBOX.>"] },
  },
};

/** A daemon's own inbox prefix: its node's, under the daemons' one. */
export const daemonInboxPrefix = (node: string) => `${DAEMON_INBOX_PREFIX}.${node}`;

/**
 * The daemon role of one node on a shared cluster (issue 10, story 7), each node its own user:
 * the daemon role narrowed to what NATS subjects can tie to a node. It may write the heartbeat
 * and snapshots of its own node only, take only the commands handed to its node, and read only
 * its own inbox; deleting the log or the heartbeat bucket, or purging the bucket, is refused.
 * What NATS cannot express (the subjects of events name an aggregate, not its node), the
 * daemons enforce: each appends only through its own deciders, for what it owns or is taking over.
 */
export function nodeDaemonPermissions(node: string): Permissions {
  return {
    publish: {
      allow: [
        "$JS.API.>", `$KV.berth_nodes.${node}`, `$KV.berth_snapshots.${node}`, `$KV.berth_snapshots.${node}.>`, "$KV.berth_requests.>",
        "$O.>", EVENTS, "$JS.ACK.>", "$JS.FC.>", "_INBOX.>", `${DAEMON_INBOX_PREFIX}.>`, FORWARDS,
      ],
      deny: [`$JS.API.STREAM.DELETE.${STREAM}`, "$JS.API.STREAM.DELETE.KV_berth_nodes", "$JS.API.STREAM.PURGE.KV_berth_nodes", "$JS.API.STREAM.PURGE.KV_berth_snapshots"],
    },
    subscribe: { allow: [COMMANDS, `${daemonInboxPrefix(node)}.>`, `berth.fwd.${node}.>`] },
  };
}

const q = (s: string) => JSON.stringify(s);
const list = (xs: string[]) => `[${xs.map(q).join(", ")}]`;

/** One role's `permissions { … }` block in nats-server's config syntax, indented by `pad`. */
export function permissionsText(role: Role | Permissions, pad = ""): string {
  const p = typeof role === "string" ? ROLE_PERMISSIONS[role] : role;
  const dir = (name: string, d: { allow: string[]; deny?: string[] }) => [
    `${pad}  ${name}: {`,
    `${pad}    allow: ${list(d.allow)}`,
    ...(d.deny?.length ? [`${pad}    deny: ${list(d.deny)}`] : []),
    `${pad}  }`,
  ];
  return [`${pad}permissions: {`, ...dir("publish", p.publish), ...dir("subscribe", p.subscribe), `${pad}}`].join("\n");
}

/** The users' names on a fresh data root and in deploy/nats-berth-users.conf. */
export const DEFAULT_USERS: Record<Role, string> = { daemon: "berth", client: "berth-client", auditor: "berth-auditor" };

/** The environment variables deploy/nats-berth-users.conf takes the passwords from. */
export const PASSWORD_ENV: Record<Role, string> = {
  daemon: "BERTH_NATS_DAEMON_PASS",
  client: "BERTH_NATS_CLIENT_PASS",
  auditor: "BERTH_NATS_AUDITOR_PASS",
};

const ROLES = ["daemon", "client", "auditor"] as const;

/** `user` and `password` are in config syntax already (a quoted string or a $variable). */
function usersText(entries: { role: Role | Permissions | null; user: string; password: string }[]): string {
  const lines = entries.map((e) =>
    [`    {`, `      user: ${e.user}`, `      password: ${e.password}`, ...(e.role ? [permissionsText(e.role, "      ")] : []), `    }`].join("\n"),
  );
  return [`authorization {`, `  users: [`, ...lines, `  ]`, `}`].join("\n");
}

/** The embedded server's `authorization { users: [...] }` block for the roles given (the daemon's always). */
export function authorizationText(users: Partial<Record<Role, NatsCred>> & { daemon: NatsCred }): string {
  return usersText(ROLES.filter((r) => users[r]).map((r) => ({ role: r, user: q(users[r]!.user), password: q(users[r]!.pass) })));
}

/** The same block for an external server (deploy/nats-berth-users.conf): passwords from the environment. */
export function externalAuthorizationText(): string {
  return usersText(ROLES.map((r) => ({ role: r, user: q(DEFAULT_USERS[r]), password: `$${PASSWORD_ENV[r]}` })));
}

/**
 * A shared cluster's users, each with its own password: one daemon user per node (its
 * permissions nodeDaemonPermissions), and any number of clients and auditors.
 */
export function clusterAuthorizationText(u: { nodes: Record<string, NatsCred>; clients: NatsCred[]; auditors?: NatsCred[]; admins?: NatsCred[] }): string {
  return usersText([
    // An operator's user: no permissions block, so everything (nats-server's default).
    ...(u.admins ?? []).map((c) => ({ role: null, user: q(c.user), password: q(c.pass) })),
    ...Object.entries(u.nodes).map(([node, c]) => ({ role: nodeDaemonPermissions(node), user: q(c.user), password: q(c.pass) })),
    ...u.clients.map((c) => ({ role: "client" as const, user: q(c.user), password: q(c.pass) })),
    ...(u.auditors ?? []).map((c) => ({ role: "auditor" as const, user: q(c.user), password: q(c.pass) })),
  ]);
}
