// The NATS roles as text: the embedded server's config, the file shipped in deploy/, the
// secrets that hold the passwords. What the server makes of them is test/int/roles.spec.ts.
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { loadSecrets, splitNatsUrl } from "../../src/config.js";
import { STREAM, SUBJECT_ROOT } from "../../src/events/types.js";
import { CMD_PREFIX } from "../../src/api/nats-service.js";
import { FORWARD } from "../../src/contract/client.js";
import { confText } from "../../src/runtime/nats-server.js";
import {
  DAEMON_INBOX_PREFIX, clusterAuthorizationText, daemonInboxPrefix, externalAuthorizationText, nodeDaemonPermissions, permissionsText, ROLE_PERMISSIONS,
} from "../../src/runtime/nats-roles.js";

const all = (role: keyof typeof ROLE_PERMISSIONS) => {
  const p = ROLE_PERMISSIONS[role];
  return { pub: p.publish.allow, pubDeny: p.publish.deny ?? [], sub: p.subscribe.allow };
};

describe("the role permissions", () => {
  it("name the stream and subjects the event and command modules use", () => {
    expect(all("daemon").pub).toContain(`${SUBJECT_ROOT}.>`);
    expect(all("daemon").sub).toContain(`${CMD_PREFIX}.>`);
    // Commands handed from daemon to daemon: the daemon's only.
    expect(all("daemon").sub).toContain(`${FORWARD}.>`);
    expect(all("daemon").pub).toContain(`${FORWARD}.>`);
    expect(all("client").pub).toEqual([`${CMD_PREFIX}.>`]);
    expect(all("daemon").pubDeny).toEqual([`$JS.API.STREAM.DELETE.${STREAM}`]);
    for (const s of all("auditor").pub.filter((x) => x !== "$JS.API.INFO")) expect(s).toContain(STREAM);
  });

  it("give the client requests and its inbox only: no events, no JetStream, no command subscription", () => {
    const c = all("client");
    expect(c.sub).toEqual(["_INBOX.>"]);
    for (const s of [...c.pub, ...c.sub]) expect(s).not.toMatch(/^\$|^berth\.ev/);
  });

  it("give the auditor nothing that writes, deletes or serves commands", () => {
    const a = all("auditor");
    for (const s of a.pub) expect(s).not.toMatch(/DELETE|PURGE|UPDATE|STREAM\.CREATE|^berth\.|^\$KV|^\$O/);
    expect(a.sub).toEqual(["_INBOX.>"]);
  });

  it("keep the daemon's inbox out of reach of the clients' and auditors' _INBOX.> (another first token)", () => {
    expect(all("daemon").sub).toContain(`${DAEMON_INBOX_PREFIX}.>`);
    expect(DAEMON_INBOX_PREFIX.startsWith("_INBOX.")).toBe(false);
  });
});

describe("the embedded server's config", () => {
  const base = { dir: "/d", port: 4222, user: "berth", pass: "p\"w", syncInterval: "always" };

  it("given all three users, has one entry each with its permission block, passwords quoted", () => {
    const text = confText({ ...base, client: { user: "berth-client", pass: "c" }, auditor: { user: "berth-auditor", pass: "a" } });
    expect(text).toContain(`user: "berth"\n      password: "p\\"w"\n${permissionsText("daemon", "      ")}`);
    expect(text).toContain(`user: "berth-client"\n      password: "c"\n${permissionsText("client", "      ")}`);
    expect(text).toContain(`user: "berth-auditor"\n      password: "a"\n${permissionsText("auditor", "      ")}`);
    expect(text.match(/^\s*user:/gm)).toHaveLength(3);
  });

  it("given only the daemon's user (benches), has that one", () => {
    expect(confText(base).match(/^\s*user:/gm)).toHaveLength(1);
  });

  it("changes when a password does (so a reused server of an older config is replaced)", () => {
    const a = confText({ ...base, client: { user: "berth-client", pass: "c" } });
    expect(confText({ ...base, client: { user: "berth-client", pass: "c2" } })).not.toBe(a);
  });
});

describe("deploy/nats-berth-users.conf", () => {
  it("carries the same users and permission blocks, passwords from the environment", async () => {
    const text = await readFile(resolve(__dirname, "../../deploy/nats-berth-users.conf"), "utf8");
    expect(text.endsWith(externalAuthorizationText() + "\n")).toBe(true);
    for (const v of ["BERTH_NATS_DAEMON_PASS", "BERTH_NATS_CLIENT_PASS", "BERTH_NATS_AUDITOR_PASS"]) expect(text).toContain(`password: $${v}\n`);
  });
});

describe("secrets.json", () => {
  it("given none, makes one (0600) with a password for each role, and keeps it on the next load", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-secrets-"));
    try {
      const s = await loadSecrets(dir);
      expect(s.natsUser).toBe("berth");
      expect(s.client.user).toBe("berth-client");
      expect(s.auditor.user).toBe("berth-auditor");
      expect(new Set([s.natsPass, s.client.pass, s.auditor.pass]).size).toBe(3);
      expect((await stat(join(dir, "secrets.json"))).mode & 0o777).toBe(0o600);
      expect(await loadSecrets(dir)).toEqual(s);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("given one of an older daemon, keeps its values and adds the client's and auditor's users", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-secrets-"));
    try {
      const old = { natsUser: "berth", natsPass: "old-pass", httpToken: "old-token" };
      await writeFile(join(dir, "secrets.json"), JSON.stringify(old), { mode: 0o600 });
      const s = await loadSecrets(dir);
      expect(s).toMatchObject(old);
      expect(s.client.pass).toMatch(/^[\w-]{32}$/);
      expect(s.auditor.pass).toMatch(/^[\w-]{32}$/);
      // Upgraded in place, not only in memory.
      expect(JSON.parse(await readFile(join(dir, "secrets.json"), "utf8"))).toEqual(s);
      expect((await stat(join(dir, "secrets.json"))).mode & 0o777).toBe(0o600);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("--nats-url with credentials", () => {
  it("takes user:pass or a token out of the URLs (nats.js would ignore them)", () => {
    expect(splitNatsUrl("nats://berth:p%40ss:x@h1:4222,nats://h2:4222")).toEqual({ servers: ["nats://h1:4222", "nats://h2:4222"], user: "berth", pass: "p@ss:x" });
    expect(splitNatsUrl("tok@h1:4222")).toEqual({ servers: ["h1:4222"], token: "tok" });
  });

  it("leaves URLs without them as they are", () => {
    expect(splitNatsUrl("nats://127.0.0.1:4222")).toEqual({ servers: ["nats://127.0.0.1:4222"] });
  });
});

describe("a node's daemon user on a shared cluster", () => {
  const p = nodeDaemonPermissions("n1");

  it("given node n1, subscribes only to commands, n1's forwarded ones and n1's own inbox", () => {
    expect(p.subscribe.allow.sort()).toEqual(["berth.cmd.>", `${FORWARD}.n1.>`, `${daemonInboxPrefix("n1")}.>`].sort());
    expect(daemonInboxPrefix("n1").startsWith(`${DAEMON_INBOX_PREFIX}.`)).toBe(true);
  });

  it("given node n1, writes n1's heartbeat and snapshot keys, not another node's nor the whole buckets", () => {
    expect(p.publish.allow).toEqual(expect.arrayContaining(["$KV.berth_nodes.n1", "$KV.berth_snapshots.n1", "$KV.berth_snapshots.n1.>", `${SUBJECT_ROOT}.>`, `${FORWARD}.>`]));
    expect(p.publish.allow.filter((x) => x.startsWith("$KV.berth_nodes") || x.startsWith("$KV.berth_snapshots")).every((x) => x.includes(".n1"))).toBe(true);
    expect(p.publish.allow).not.toContain("$KV.>");
    expect(p.publish.deny).toEqual(expect.arrayContaining([`$JS.API.STREAM.DELETE.${STREAM}`, "$JS.API.STREAM.DELETE.KV_berth_nodes", "$JS.API.STREAM.PURGE.KV_berth_nodes"]));
  });

  it("the cluster's users file has each node's user with its own block, the clients, the auditor and an operator without limits", () => {
    const text = clusterAuthorizationText({
      nodes: { n1: { user: "berth-n1", pass: "p1" }, n2: { user: "berth-n2", pass: "p2" } },
      clients: [{ user: "berth-client-a", pass: "c" }], auditors: [{ user: "berth-auditor", pass: "a" }], admins: [{ user: "op", pass: "o" }],
    });
    expect(text).toContain(permissionsText(nodeDaemonPermissions("n2"), "      "));
    expect(text).toContain(permissionsText("client", "      "));
    expect(text).toContain(permissionsText("auditor", "      "));
    // The operator's entry carries no permissions block.
    expect(text).toMatch(/user: "op"\n {6}password: "o"\n {4}\}/);
  });
});
