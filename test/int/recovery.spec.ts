// Recovery on the real stack: the daemon goes away, the host changes meanwhile, a new
// daemon on the same data root reconciles the log with what really happened.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const SEED = process.env.BERTH_SEED_IMAGE ?? "/opt/berth/images/busybox-latest.oci.tar";

type C = { id: string; name: string; state: string; pid: number | null; exitCode: number | null; finishedAt: string | null; lastError: string | null };
type Ev = { type: string; seq: number; at: string; data: Record<string, unknown> };

describe.skipIf(skip)("recovery", () => {
  let d: TestDaemon;
  let natsPort: number;
  const ids: Record<string, string> = {};
  const pids: Record<string, number> = {};
  let altArchive: string;

  beforeAll(async () => {
    d = await startTestDaemon();
    natsPort = Number(new URL(d.client.nats.servers[0]).port);
    // A second image with its own digest (docker-archive manifest), so deleting it touches no other.
    altArchive = join(d.dataRoot, "..", `berth-alt-${d.node}.tar`);
    execFileSync("skopeo", ["copy", "-q", `oci-archive:${SEED}`, `docker-archive:${altArchive}:alt:1`]);
    expect((await d.cmd("image.import", { source: `docker-archive:${altArchive}`, name: "alt:1" })).ok).toBe(true);
  });
  afterAll(async () => {
    await d?.destroy();
    if (altArchive) await rm(altArchive, { force: true });
  });

  const run = async (name: string, cmd: string[], extra: Record<string, unknown> = {}) => {
    const r = await d.cmd<{ id: string; pid: number }>("container.run", { name, image: "busybox", cmd, ...extra });
    expect(r.error).toBeUndefined();
    ids[name] = r.result!.id;
    pids[name] = r.result!.pid;
  };

  it("hands every container back according to what happened while the daemon was away", async () => {
    for (const n of ["r1", "r2", "r3"]) await run(n, ["sleep", "1000"]);
    // These two end only once the daemon is down (the test drops a file into their rootfs then),
    // however long the runs before took on a loaded machine.
    const whenTold = "while [ ! -e /go ]; do sleep 0.05; done";
    await run("three", ["sh", "-c", `${whenTold}; exit 3`]);
    await run("killed", ["sleep", "1000"]);
    await run("gone", ["sh", "-c", whenTold], { autoRemove: true });
    await run("vanish", ["sleep", "1000"]);
    const stopped = await d.cmd<{ id: string }>("container.create", { name: "noimage", image: "alt:1", cmd: ["true"] });
    ids.noimage = stopped.result!.id;
    const root = d.dataRoot;

    await d.stop();
    const downAt = Date.now();
    for (const n of ["three", "gone"]) writeFileSync(join(root, "containers", ids[n], "rootfs", "go"), "");
    // Meanwhile on the host: one is killed from outside, one loses its conmon, one image is deleted.
    execFileSync("runc", ["--root", join(root, "runc"), "kill", ids.killed, "KILL"]);
    const conmonPid = Number(readFileSync(join(root, "containers", ids.vanish, "conmon.pid"), "utf8"));
    process.kill(conmonPid, "SIGKILL");
    process.kill(pids.vanish, "SIGKILL");
    const index = JSON.parse(readFileSync(join(root, "images", "index.json"), "utf8")) as { images: { name: string; rootfs: string }[] };
    await rm(index.images.find((i) => i.name === "alt:1")!.rootfs, { recursive: true, force: true });
    await until(async () => existsSync(join(root, "exits", ids.three)) && existsSync(join(root, "exits", ids.gone)) && existsSync(join(root, "exits", ids.killed)), 10_000);
    await until(async () => !alive(pids.vanish));

    const t0 = Date.now();
    d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort });
    const readyMs = Date.now() - t0;
    expect(readyMs).toBeLessThan(5_000);

    const get = (name: string) => d.get<C>(`/v1/containers/${ids[name]}`);
    for (const n of ["r1", "r2", "r3"]) {
      expect(await get(n)).toMatchObject({ state: "running", pid: pids[n] });
      expect(alive(pids[n])).toBe(true);
    }
    const three = await get("three");
    expect(three).toMatchObject({ state: "exited", exitCode: 3 });
    // The exit time is the real one from conmon's exit file, not when the new daemon noticed.
    const ev3 = (await d.get<{ events: Ev[] }>(`/v1/containers/${ids.three}/events`)).events.at(-1)!;
    expect(ev3.type).toBe("ContainerExited");
    expect(Date.parse(ev3.at) - Date.parse(three.finishedAt!)).toBeGreaterThan(300);
    expect(Date.parse(three.finishedAt!)).toBeGreaterThanOrEqual(downAt - 1_000);

    expect(await get("killed")).toMatchObject({ state: "exited", exitCode: 137 });
    expect(await get("vanish")).toMatchObject({ state: "exited", exitCode: -1 });
    await until(async () => (await d.http(`/v1/containers/${ids.gone}`)).status === 404);
    const noimage = await get("noimage");
    expect(noimage.lastError).toMatch(/restore: image alt:1 .* no longer on node/);
    const failed = (await d.get<{ events: Ev[] }>(`/v1/containers/${ids.noimage}/events`)).events.filter((e) => e.type === "ContainerRestoreFailed");
    expect(failed).toHaveLength(1);

    const { events } = await d.get<{ events: Ev[] }>(`/v1/events?type=NodeRestored`);
    const nr = events.at(-1)!;
    expect(nr.data).toMatchObject({ containers: 8, failed: 1, orphans: [] });
    expect(nr.data.durationMs as number).toBeGreaterThan(0);
  });

  it("after a host reboot starts always and unless-stopped containers again (and a user-stopped always one: Docker), and records -1 for the rest", async () => {
    const policy = (name: string) => ({ restartPolicy: { name, backoff: { initialMs: 100, maxMs: 200 } } });
    await run("b-always", ["sleep", "1000"], policy("always"));
    await run("b-unless", ["sleep", "1000"], policy("unless-stopped"));
    await run("b-no", ["sleep", "1000"], policy("no"));
    await run("b-onfail", ["sleep", "1000"], policy("on-failure"));
    await run("b-stopped", ["sleep", "1000"], { ...policy("always"), stopTimeoutSec: 1 });
    expect((await d.cmd("container.stop", { id: "b-stopped", timeoutSec: 1 })).ok).toBe(true);
    await run("b-unless-stopped", ["sleep", "1000"], { ...policy("unless-stopped"), stopTimeoutSec: 1 });
    expect((await d.cmd("container.stop", { id: "b-unless-stopped", timeoutSec: 1 })).ok).toBe(true);
    await run("b-onfail-stopped", ["sleep", "1000"], { ...policy("on-failure"), stopTimeoutSec: 1 });
    expect((await d.cmd("container.stop", { id: "b-onfail-stopped", timeoutSec: 1 })).ok).toBe(true);
    const root = d.dataRoot;
    await d.stop();

    // The reboot: every conmon and container process of ours gone, overlays unmounted.
    for (const n of ["b-always", "b-unless", "b-no", "b-onfail"]) {
      const dir = join(root, "containers", ids[n]);
      process.kill(Number(readFileSync(join(dir, "conmon.pid"), "utf8")), "SIGKILL");
      process.kill(pids[n], "SIGKILL");
    }
    for (const n of ["b-always", "b-unless", "b-no", "b-onfail"]) await until(async () => !alive(pids[n]));
    for (const n of ["b-always", "b-unless", "b-no", "b-onfail", "b-stopped", "b-unless-stopped", "b-onfail-stopped"]) {
      const rootfs = join(root, "containers", ids[n], "rootfs");
      if (readFileSync("/proc/self/mountinfo", "utf8").includes(rootfs)) execFileSync("umount", [rootfs]);
    }

    d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort });
    const get = (name: string) => d.get<C & { restartCount: number }>(`/v1/containers/${ids[name]}`);
    // b-stopped: `always` after a user's stop runs again when the daemon starts (Docker's rule);
    // b-onfail: the reboot cut its run (exit -1, a failure), so on-failure restarts it.
    for (const n of ["b-always", "b-unless", "b-stopped", "b-onfail"]) {
      const c = await until(async () => {
        const c = await get(n);
        return c.state === "running" && c;
      }, 10_000);
      expect(c.pid).not.toBe(pids[n]);
      expect(alive(c.pid!)).toBe(true);
      expect(c.restartCount).toBe(1);
    }
    expect(await get("b-no")).toMatchObject({ state: "exited", exitCode: -1 });
    expect(await get("b-unless-stopped")).toMatchObject({ state: "exited", exitCode: 137 });
    expect((await get("b-onfail-stopped")).state).toBe("exited");
    // Nothing more happens to them.
    await new Promise((r) => setTimeout(r, 500));
    for (const n of ["b-no", "b-unless-stopped", "b-onfail-stopped"]) expect((await get(n)).state, n).toBe("exited");
  });

  it("does not say the same restore failure twice across restarts", async () => {
    const root = d.dataRoot;
    await d.stop();
    d = await startTestDaemon({ dataRoot: root, node: d.node, natsPort });
    const failed = (await d.get<{ events: Ev[] }>(`/v1/containers/${ids.noimage}/events`)).events.filter((e) => e.type === "ContainerRestoreFailed");
    expect(failed).toHaveLength(1);
  });
});
