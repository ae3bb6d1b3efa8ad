// The README's story through the `berth` CLI, against a daemon in its own process, as a new user
// would type it. Also: kill -9 of the daemon stops no container, and two daemons on one machine
// do not collide.
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Paths } from "../../src/runtime/paths.js";
import { freePort } from "../support/nats.js";
import { BIN, BUILT, startDaemonProc, stopProc, running, type DaemonProc } from "../support/daemon-proc.js";
import { IN_CI, missing, UPGRADE_IMAGES } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const built = BUILT;
if (!built && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !built || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

describe.skipIf(skip)("the berth CLI against a daemon process", () => {
  let dataRoot: string;
  let d: DaemonProc;
  const berth = (...args: string[]) => execa(BIN, ["--data-root", dataRoot, ...args], { reject: false });

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-cli-"));
    d = await startDaemonProc(dataRoot, `cli${randomBytes(3).toString("hex")}`, await freePort());
  });
  afterAll(async () => {
    if (d && running(d)) {
      const ps = await berth("ps", "-a", "--json");
      for (const c of JSON.parse(ps.stdout || "[]") as { id: string }[]) await berth("rm", "-f", c.id);
      await stopProc(d);
    }
    // The embedded nats-server of a killed daemon is stopped by the daemon that reused it.
    await rm(dataRoot, { recursive: true, force: true });
    await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
  });

  it("run, ps, logs, stop, ps -a, start, events, replay, rm -f", async () => {
    const run = await berth("run", "--name", "web", "busybox:latest", "sh", "-c", "echo hello; sleep 1000");
    expect(run.stderr).toBe("");
    expect(run.exitCode).toBe(0);
    const id = run.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{64}$/);

    const ps = await berth("ps");
    expect(ps.stdout).toMatch(/NAME/);
    const row = ps.stdout.split("\n").find((l) => l.includes("web"))!;
    expect(row).toMatch(/running/);
    const inspect = JSON.parse((await berth("inspect", "web")).stdout);
    expect(row).toContain(String(inspect.pid));

    for (let i = 0; i < 100 && !(await berth("logs", "web")).stdout.includes("hello"); i++) await new Promise((r) => setTimeout(r, 50));
    expect((await berth("logs", "web")).stdout.trim()).toBe("hello");

    expect((await berth("stop", "-t", "1", "web")).exitCode).toBe(0);
    expect((await berth("ps")).stdout).not.toContain("web");
    const all = await berth("ps", "-a");
    expect(all.stdout.split("\n").find((l) => l.includes("web"))).toMatch(/exited\s+\S*\s*137|137/);

    expect((await berth("start", "web")).exitCode).toBe(0);
    expect(JSON.parse((await berth("inspect", "web")).stdout).state).toBe("running");

    const ev = await berth("events", "--container", id, "--json");
    const events = JSON.parse(ev.stdout) as { type: string; seq: number }[];
    expect(events.map((e) => e.type)).toEqual([
      "ContainerCreated", "ContainerStartRequested", "ContainerStarted", "ContainerStopRequested",
      "ContainerExited", "ContainerStartRequested", "ContainerStarted",
    ]);
    const table = (await berth("events")).stdout;
    expect(table).toMatch(/SEQ/);
    expect(table).toContain("ContainerStopRequested");

    const replay = await berth("replay", "--at", String(events[4].seq), "--json");
    const past = JSON.parse(replay.stdout) as { seq: number; containers: { name: string; state: string; exitCode: number }[] };
    expect(past.containers.find((c) => c.name === "web")).toMatchObject({ state: "exited", exitCode: 137 });

    expect((await berth("rm", "-f", "web")).exitCode).toBe(0);
    expect((await berth("ps", "-a")).stdout).not.toContain("web");
    expect(existsSync(join(dataRoot, "containers", id))).toBe(false);
  });

  it("exits 1 with the error code on stderr, 2 on usage errors", async () => {
    const nf = await berth("start", "nosuch");
    expect(nf.exitCode).toBe(1);
    expect(nf.stderr).toMatch(/NotFound/);
    expect((await berth("frobnicate")).exitCode).toBe(2);
    expect((await berth("run")).exitCode).toBe(2);
  });

  it("upgrade and rollback as the README shows them, and a failed upgrade exits 1 with its reason", async () => {
    if (missing("upgrade images").length) return;
    for (const [name, path] of Object.entries(UPGRADE_IMAGES)) expect((await berth("image", "import", `oci-archive:${path}`, "--name", name)).exitCode).toBe(0);
    expect((await berth("run", "--name", "svc", "--stop-timeout", "1", "-v", `svc${randomBytes(2).toString("hex")}:/data`, "-e", "MODE=prod", "busybox:latest", "sleep", "1000")).exitCode).toBe(0);
    const up = await berth("upgrade", "--health-gate", "1s", "-e", "EXTRA=1", "-l", "tier=db", "--cmd", "sleep 2000", "svc", "busybox:v2");
    expect(up.stderr).toBe("");
    expect(up.stdout).toMatch(/^[0-9a-f]{64} busybox:v2 revision 1 running$/);
    const v = JSON.parse((await berth("inspect", "svc")).stdout);
    expect(v).toMatchObject({ image: "busybox:v2", revision: 1, labels: { tier: "db" }, spec: { cmd: ["sleep", "2000"] } });
    expect(v.spec.env).toEqual(["MODE=prod", "EXTRA=1"]);
    const back = await berth("rollback", "--json", "svc");
    expect(JSON.parse(back.stdout)).toMatchObject({ image: "busybox:latest", revision: 0, state: "running" });
    const again = await berth("rollback", "svc");
    expect(again.exitCode).toBe(1);
    expect(again.stderr).toMatch(/^berth: Conflict: cannot roll back container svc: it has no previous revision/);
    const broken = await berth("upgrade", "svc", "busybox:broken");
    expect(broken.exitCode).toBe(1);
    expect(broken.stderr).toMatch(/^berth: RuntimeError: upgrade rolled back to revision 0 \(busybox:latest\): start: .*no-such-server/);
    expect((await berth("upgrade", "--health-gate", "soon", "svc", "busybox:v2")).exitCode).toBe(2);
    expect((await berth("rm", "-f", "svc")).exitCode).toBe(0);
  });

  it("checkpoint, checkpoint ls, restore and checkpoint rm of a counter", async () => {
    if (missing("criu").length) return;
    const run = await berth("run", "--name", "counter", "busybox:latest", "sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done");
    expect(run.exitCode).toBe(0);
    const counter = async () => Number((await berth("exec", "counter", "sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done")).stdout.trim());
    try {
      await until(async () => (await counter()) > 1, 20_000);
      const cp = await berth("checkpoint", "counter");
      expect(cp.stderr).toBe("");
      expect(cp.exitCode).toBe(0);
      const id = cp.stdout.trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const row = (await berth("checkpoint", "ls")).stdout.split("\n").find((l) => l.startsWith(id.slice(0, 12)));
      // CHECKPOINT ID, CONTAINER, POD (none: -), NODE, SIZE, FROZEN, CREATED.
      expect(row).toMatch(/^[0-9a-f]{12}\s+counter\s+-\s+\S+\s+[\d.]+[kMG]?B\s+\d+ms\s+(just now|\d+ seconds? ago)$/);

      const r = await berth("restore", id);
      expect(r.stderr).toBe("");
      expect(r.exitCode).toBe(0);
      expect(r.stdout.trim()).toMatch(/^[0-9a-f]{64} counter running$/);
      expect(await counter()).toBeGreaterThan(1);

      const rm = await berth("checkpoint", "rm", id);
      expect(rm.exitCode).toBe(0);
      expect(rm.stdout.trim()).toBe(id);
      expect((await berth("checkpoint", "ls")).stdout).not.toContain(id.slice(0, 12));
      const again = await berth("restore", id);
      expect(again.exitCode).toBe(1);
      expect(again.stderr).toMatch(/^berth: NotFound: /);

      // Through a file, as podman does: --export writes a .tar.gz, --import brings it back.
      const file = join(dataRoot, "counter.tar.gz");
      const ex = await berth("checkpoint", "--leave-running", "--export", file, "counter");
      expect(ex.exitCode, ex.stderr).toBe(0);
      expect(readFileSync(file).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
      const im = await berth("restore", "--import", file, "--name", "counter-copy");
      expect(im.stderr).toBe("");
      expect(im.stdout.trim()).toMatch(/^[0-9a-f]{64} counter-copy running$/);
      expect(Number((await berth("exec", "counter-copy", "sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done")).stdout.trim())).toBeGreaterThan(1);
      const notArchive = await berth("restore", "--import", join(dataRoot, "client.json"));
      expect(notArchive.exitCode).toBe(1);
      expect(notArchive.stderr).toMatch(/^berth: InvalidArgument: not a berth checkpoint archive/);
    } finally {
      expect((await berth("rm", "-f", "counter")).exitCode).toBe(0);
      await berth("rm", "-f", "counter-copy");
    }
  }, 180_000);

  it("update --restart and --annotation k=v / k-: the policy changes, the local checkpoint comes and goes", async () => {
    const run = await berth("run", "--name", "crit", "busybox:latest", "sleep", "1000");
    expect(run.exitCode).toBe(0);
    const id = run.stdout.trim();
    const copy = join(dataRoot, "local-checkpoints", `${id}.json`);
    const wait = async (want: boolean) => {
      for (let i = 0; i < 100 && existsSync(copy) !== want; i++) await new Promise((r) => setTimeout(r, 50));
      expect(existsSync(copy)).toBe(want);
    };
    const up = await berth("update", "--restart", "always", "--annotation", "berth.io/checkpoint=true", "--annotation", "team=ops", "crit");
    expect(up.exitCode, up.stderr).toBe(0);
    await wait(true);
    let v = JSON.parse((await berth("inspect", "crit")).stdout);
    expect(v.restartPolicy).toEqual({ name: "always" });
    expect(v.annotations).toEqual({ "berth.io/checkpoint": "true", team: "ops" });
    expect(v.localCheckpoint.writtenAt).toEqual(expect.any(String));
    const bad = await berth("update", "--annotation", "berth.io/checkpoint=yes", "crit");
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/berth: InvalidArgument: .*must be "true"/);
    expect((await berth("update", "--annotation", "berth.io/checkpoint-", "crit")).exitCode).toBe(0);
    await wait(false);
    v = JSON.parse((await berth("inspect", "crit")).stdout);
    expect(v.annotations).toEqual({ team: "ops" });
    expect(v.localCheckpoint).toBeNull();
    expect((await berth("rm", "-f", "crit")).exitCode).toBe(0);
  });

  it("image ls lists busybox:latest", async () => {
    const ls = await berth("image", "ls");
    expect(ls.exitCode).toBe(0);
    expect(ls.stdout).toContain("busybox");
  });

  it("kill -9 of the daemon stops no container; a new daemon picks the containers up", async () => {
    const id = (await berth("run", "--name", "survivor", "busybox", "sleep", "1000")).stdout.trim();
    const pid = JSON.parse((await berth("inspect", id)).stdout).pid as number;
    const natsPid = Number(readFileSync(join(dataRoot, "nats", "nats-server.pid"), "utf8"));
    await stopProc(d, "SIGKILL");
    expect(alive(pid)).toBe(true);

    d = await startDaemonProc(dataRoot, JSON.parse(readFileSync(join(dataRoot, "client.json"), "utf8")).node, d.natsPort);
    // One nats-server per data root, never two.
    expect(Number(readFileSync(join(dataRoot, "nats", "nats-server.pid"), "utf8"))).toBe(natsPid);
    const c = JSON.parse((await berth("inspect", "survivor")).stdout);
    expect(c).toMatchObject({ state: "running", pid });
    expect((await berth("stop", "-t", "1", "survivor")).exitCode).toBe(0);
    expect(alive(pid)).toBe(false);
    await berth("rm", "survivor");
  });

  it("a second daemon with its own data root runs a container of the same name without collision", async () => {
    const root2 = await mkdtemp(join(tmpdir(), "berth-cli2-"));
    const d2 = await startDaemonProc(root2, `cli2${randomBytes(3).toString("hex")}`, await freePort());
    const b2 = (...args: string[]) => execa(BIN, ["--data-root", root2, ...args], { reject: false });
    try {
      const a = await berth("run", "--name", "same", "busybox", "sleep", "1000");
      const b = await b2("run", "--name", "same", "busybox", "sleep", "1000");
      expect(a.exitCode).toBe(0);
      expect(b.exitCode).toBe(0);
      expect((await berth("ps")).stdout).toContain("same");
      expect((await b2("ps")).stdout).toContain("same");
      expect((await berth("rm", "-f", "same")).exitCode).toBe(0);
      // The other daemon's container is untouched.
      expect(JSON.parse((await b2("inspect", "same")).stdout).state).toBe("running");
      expect((await b2("rm", "-f", "same")).exitCode).toBe(0);
    } finally {
      await stopProc(d2);
      await rm(root2, { recursive: true, force: true });
      await rm(new Paths(root2).socketDir, { recursive: true, force: true });
    }
  });
});
