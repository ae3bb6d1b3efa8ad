// Local checkpoints, story 1 of issue 11, on a real daemon (nats-server, runc, conmon): a
// container annotated berth.io/checkpoint=true has a sanitized copy on its node's disk, written
// again when what it holds changes in the log, shown by inspect, and retired when the annotation
// or the container goes; a value other than "true" is refused and changes nothing; at start, a
// copy whose container the log does not know here is retired.
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestDaemon, type TestDaemon } from "../support/daemon.js";
import { missing } from "../support/prereq.js";
import { connectAs } from "../support/roles.js";

const skip = missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;
const ANNOTATION = "berth.io/checkpoint";

async function until<T>(f: () => Promise<T | null | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out");
    await sleep(50);
  }
}

describe.skipIf(skip)("local checkpoints: the copies a node keeps of its critical containers", () => {
  let d: TestDaemon;
  let daemonNc: NatsConnection;
  const dir = () => join(d.dataRoot, "local-checkpoints");
  const copyOf = async (id: string) => JSON.parse(await readFile(join(dir(), `${id}.json`), "utf8")) as Record<string, any>;
  const hasCopy = async (id: string) => (await readdir(dir()).catch((): string[] => [])).includes(`${id}.json`);
  const inspect = (ref: string) => d.get<{ localCheckpoint: { node: string; writtenAt: string | null } | null; spec: Record<string, unknown> }>(`/v1/containers/${ref}`);
  const lastSeq = async () => (await (await jetstreamManager(daemonNc)).streams.info("BERTH_EVENTS")).state.last_seq;

  beforeAll(async () => {
    d = await startTestDaemon();
    daemonNc = await connectAs(d.dataRoot, "daemon");
  });
  afterAll(async () => {
    await daemonNc?.close();
    await d?.destroy();
  });

  it("given a container run with the annotation, then its node keeps a sanitized copy (0600 in a 0700 dir), and inspect says when it was written", async () => {
    const r = await d.cmd<{ id: string }>("container.run", { name: "agent", image: "busybox", cmd: ["sleep", "1000"], annotations: { [ANNOTATION]: "true" }, restartPolicy: { name: "always" } });
    expect(r.ok).toBe(true);
    const id = r.result!.id;
    const copy = await until(async () => (await hasCopy(id)) && (await copyOf(id)));
    expect(copy).toMatchObject({ schema: 1, id, name: "agent", node: d.node, image: "busybox:latest", pod: null, retiring: null });
    expect(copy.imageDigest).toMatch(/^sha256:/);
    expect(copy.spec).toMatchObject({ image: "busybox", cmd: ["sleep", "1000"], annotations: { [ANNOTATION]: "true" }, restartPolicy: { name: "always" } });
    expect(copy.spec.node).toBeUndefined();
    expect((await stat(dir())).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir(), `${id}.json`))).mode & 0o777).toBe(0o600);
    expect((await inspect("agent")).localCheckpoint).toEqual({ node: d.node, writtenAt: copy.writtenAt });
  });

  it("given a container without the annotation, then no copy, and inspect says null", async () => {
    const r = await d.cmd<{ id: string }>("container.create", { name: "plain", image: "busybox", cmd: ["true"] });
    await sleep(300);
    expect(await hasCopy(r.result!.id)).toBe(false);
    expect((await inspect("plain")).localCheckpoint).toBeNull();
  });

  it("given a change of what the copy holds (an update), then the copy is written again; an exit alone does not rewrite it", async () => {
    const { id } = await d.get<{ id: string }>("/v1/containers/agent");
    const before = await copyOf(id);
    expect((await d.cmd("container.update", { id: "agent", restartPolicy: { name: "on-failure", maxRetries: 3 } })).ok).toBe(true);
    const after = await until(async () => {
      const c = await copyOf(id);
      return c.writtenAt !== before.writtenAt && c;
    });
    expect(after.spec.restartPolicy).toEqual({ name: "on-failure", maxRetries: 3 });
    expect(after.logSeq).toBeGreaterThan(before.logSeq);
  });

  it("given a value other than \"true\", then InvalidArgument on create and on update, and nothing is appended", async () => {
    const seq = await lastSeq();
    for (const v of ["false", "yes", "TRUE"]) {
      expect((await d.cmd("container.create", { name: `bad-${v.toLowerCase()}`, image: "busybox", annotations: { [ANNOTATION]: v } })).error?.code).toBe("InvalidArgument");
      expect((await d.cmd("container.update", { id: "agent", annotations: { [ANNOTATION]: v } })).error?.code).toBe("InvalidArgument");
    }
    expect((await d.cmd("pod.create", { name: "badpod", annotations: { [ANNOTATION]: "1" } })).error?.code).toBe("InvalidArgument");
    expect(await lastSeq()).toBe(seq);
  });

  it("given the annotation removed by an update, then the copy is retired; set again, it comes back; the container removed, it goes", async () => {
    const { id } = await d.get<{ id: string }>("/v1/containers/agent");
    expect((await d.cmd("container.update", { id: "agent", annotations: { [ANNOTATION]: null, team: "ops" } })).ok).toBe(true);
    await until(async () => !(await hasCopy(id)));
    const v = await inspect("agent");
    expect(v.localCheckpoint).toBeNull();
    expect(v.spec.annotations).toEqual({ team: "ops" });
    expect((await d.cmd("container.update", { id: "agent", annotations: { [ANNOTATION]: "true" } })).ok).toBe(true);
    await until(() => hasCopy(id));
    expect((await d.cmd("container.remove", { id: "agent", force: true })).ok).toBe(true);
    await until(async () => !(await hasCopy(id)));
  });

  it("given a pod with the annotation, then each member has a copy that names the pod; the pod removed, they go", async () => {
    const pod = await d.cmd<{ id: string }>("pod.create", { name: "critpod", annotations: { [ANNOTATION]: "true" }, network: { mode: "none" } });
    expect(pod.error).toBeUndefined();
    const m = await d.cmd<{ id: string }>("container.create", { name: "member", pod: "critpod", image: "busybox", cmd: ["true"] });
    expect(m.error).toBeUndefined();
    const copy = await until(async () => (await hasCopy(m.result!.id)) && (await copyOf(m.result!.id)));
    expect(copy).toMatchObject({ name: "member", pod: { id: pod.result!.id, name: "critpod", ip: null } });
    expect((await inspect("member")).localCheckpoint).toEqual({ node: d.node, writtenAt: copy.writtenAt });
    expect((await d.cmd("pod.remove", { id: "critpod", force: true })).error).toBeUndefined();
    await until(async () => !(await hasCopy(m.result!.id)));
  });

  it("given a copy on disk whose container this node does not have, when the daemon starts, then it is retired after the grace period; a copy that is not valid is left alone with a log line", async () => {
    const r = await d.cmd<{ id: string }>("container.create", { name: "keeper", image: "busybox", cmd: ["true"], annotations: { [ANNOTATION]: "true" } });
    const id = r.result!.id;
    const real = await until(async () => (await hasCopy(id)) && (await copyOf(id)));
    const stranger = "f".repeat(64);
    const natsPort = Number(new URL(d.client.nats.servers[0]).port);
    const { dataRoot, node } = d;
    await d.stop();
    await writeFile(join(dir(), `${stranger}.json`), JSON.stringify({ ...real, id: stranger, name: "stranger" }), { mode: 0o600 });
    await writeFile(join(dir(), `${"e".repeat(64)}.json`), "{not json", { mode: 0o600 });
    d = await startTestDaemon({ dataRoot, node, natsPort, checkpointGraceSec: 2 });
    // Its container gone from the log: marked retiring (never started offline), deleted after the grace.
    expect(await copyOf(stranger)).toMatchObject({ retiring: { reason: "removed" } });
    await until(async () => !(await hasCopy(stranger)));
    expect(await hasCopy(id)).toBe(true);
    expect((await readdir(dir())).sort()).toEqual([`${"e".repeat(64)}.json`, `${id}.json`].sort());
    expect((await inspect("keeper")).localCheckpoint).toEqual({ node, writtenAt: real.writtenAt });
  });
});
