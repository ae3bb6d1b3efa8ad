// The HTTP query API against a real nats-server (one per file: the store's subjects are
// `berth.ev.>`, so two streams in one server would overlap).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { EventStore } from "../../src/events/store.js";
import { EVENT_VERSION, containerSubject, imageSubject, nodeSubject, type BerthEvent, type StoredEvent } from "../../src/events/types.js";
import { ReadModel } from "../../src/projections/read-model.js";
import { Readable } from "node:stream";
import { buildHttpServer } from "../../src/api/http.js";
import { createMetrics } from "../../src/api/metrics.js";

const NATS_BIN = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => existsSync(p));
const TOKEN = "s3cret-token";
const auth = { authorization: `Bearer ${TOKEN}` };
const T0 = Date.parse("2026-03-01T10:00:00.000Z");

if (!NATS_BIN && process.env.CI === "true") {
  throw new Error("nats-server is not installed: the HTTP integration suite cannot run in CI without it");
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = createConnection({ port, host: "127.0.0.1" }, () => {
        c.end();
        resolve(true);
      });
      c.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nats-server did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// web and job share the prefix "abcd", so that prefix is ambiguous.
const ID = { web: "abcd" + "1".repeat(60), job: "abcd" + "2".repeat(60), gone: "c3".repeat(32), late: "d4".repeat(32) };

describe.skipIf(!NATS_BIN)("HTTP query API", () => {
  let dir: string;
  let server: ChildProcess;
  let nc: NatsConnection;
  let store: EventStore;
  const model = new ReadModel();
  let ready = false;
  let app: ReturnType<typeof buildHttpServer>;
  let tick = 0;
  const seqs: Record<string, number> = {};

  async function append(subject: string, type: BerthEvent["type"], data: unknown, key?: string): Promise<number> {
    const ev = {
      type,
      v: EVENT_VERSION,
      eventId: randomUUID(),
      at: new Date(T0 + 1000 * tick++).toISOString(),
      node: "n1",
      actor: "test",
      correlationId: randomUUID(),
      causationId: null,
      data,
    } as BerthEvent;
    const seq = await store.append(subject, ev);
    if (key) seqs[key] = seq;
    return seq;
  }
  const spec = (name: string, labels: Record<string, string> = {}) => ({ name, image: "busybox:latest", labels });
  const created = (cid: string, name: string, labels?: Record<string, string>) =>
    append(containerSubject(cid), "ContainerCreated", {
      id: cid, name, image: "busybox:latest", imageDigest: "sha256:" + "e".repeat(64), node: "n1", spec: spec(name, labels),
    });
  const started = (cid: string, pid: number) =>
    append(containerSubject(cid), "ContainerStarted", { pid, startedAt: new Date(T0 + 1000 * tick).toISOString() });

  async function catchUp() {
    await store.read({ fromSeq: model.seq + 1 }, (e) => model.apply(e));
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-http-"));
    const port = await freePort();
    server = spawn(NATS_BIN!, ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", dir], { stdio: "ignore" });
    await waitForPort(port, 15_000);
    nc = await connect({ servers: `127.0.0.1:${port}` });
    store = await EventStore.open(nc);

    await append(nodeSubject("n1"), "NodeStarted", { httpUrl: "http://127.0.0.1:1", version: "0.1.0", dataRoot: "/x" });
    await append(imageSubject("sha256:" + "e".repeat(64)), "ImageImported", {
      name: "busybox:latest", digest: "sha256:" + "e".repeat(64), sizeBytes: 1234,
      config: { entrypoint: null, cmd: ["sh"], env: [], workdir: "/", user: "", stopSignal: null, labels: {} },
    });
    await created(ID.web, "web", { app: "web", tier: "front" });
    await append(containerSubject(ID.web), "ContainerStartRequested", {});
    await started(ID.web, 100);
    seqs.webStarted = await store.lastSeq();
    await created(ID.job, "job", { app: "batch" });
    await append(containerSubject(ID.job), "ContainerStartRequested", {});
    await started(ID.job, 200);
    await append(containerSubject(ID.job), "ContainerExited", { exitCode: 7, oomKilled: false, exitedAt: new Date(T0 + 1000 * tick).toISOString() }, "jobExited");
    await created(ID.gone, "gone");
    await append(containerSubject(ID.gone), "ContainerRemoveRequested", { force: false });
    await append(containerSubject(ID.gone), "ContainerRemoved", {}, "goneRemoved");
    await catchUp();

    app = buildHttpServer({
      model,
      store,
      token: TOKEN,
      node: "n1",
      readiness: () => ({ ready, phase: ready ? "ready" : "restoring" }),
      metrics: createMetrics(model),
      // The route streams what the runtime's reader gives (test/int/logs.spec.ts reads real logs).
      logs: (cid, q) => {
        const lines = [1, 2, 3].map((i) => `${cid.slice(0, 4)} line ${i}\n`);
        return Readable.from(q.tail === undefined ? lines : lines.slice(lines.length - q.tail));
      },
    });
    await app.ready();
  });

  afterAll(async () => {
    await app?.close();
    await nc?.close();
    if (server && server.exitCode === null) {
      const exited = new Promise((r) => server.once("exit", r));
      server.kill("SIGTERM");
      await exited;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const get = (url: string, headers: Record<string, string> = auth) => app.inject({ method: "GET", url, headers });

  it("is not ready until recovery is done", async () => {
    const r1 = await get("/readyz", {});
    expect(r1.statusCode).toBe(503);
    expect(r1.json()).toEqual({ phase: "restoring" });
    // Queries wait too: a half-restored read model would answer wrongly.
    const q = await get("/v1/containers");
    expect(q.statusCode).toBe(503);
    expect(q.json().error.code).toBe("Unavailable");
    ready = true;
    const r2 = await get("/readyz", {});
    expect(r2.statusCode).toBe(200);
    expect(r2.json()).toEqual({ phase: "ready" });
  });

  it("wants the bearer token on /v1 and nowhere else", async () => {
    expect((await get("/v1/containers", {})).statusCode).toBe(401);
    const bad = await get("/v1/containers", { authorization: "Bearer nope" });
    expect(bad.statusCode).toBe(401);
    expect(bad.json().error.code).toBe("Unauthenticated");
    expect((await get("/v1/containers/web/events", { authorization: TOKEN })).statusCode).toBe(401);
    expect((await get("/v1/containers")).statusCode).toBe(200);
    expect((await get("/healthz", {})).statusCode).toBe(200);
    expect((await get("/metrics", {})).statusCode).toBe(200);
  });

  it("lists running containers by default, every one with all=true, filtered", async () => {
    const ls = (await get("/v1/containers")).json();
    expect(ls.containers.map((c: { name: string }) => c.name)).toEqual(["web"]);
    const web = ls.containers[0];
    expect(web).toMatchObject({ id: ID.web, state: "running", pid: 100, node: "n1", restartCount: 0, labels: { app: "web" } });
    expect(web.spec).toBeUndefined();
    const all = (await get("/v1/containers?all=true")).json();
    expect(all.containers.map((c: { name: string }) => c.name)).toEqual(["web", "job"]);
    expect(all.containers[1]).toMatchObject({ state: "exited", exitCode: 7, pid: null });
    const byLabel = (await get("/v1/containers?all=true&label=app=batch")).json();
    expect(byLabel.containers.map((c: { name: string }) => c.name)).toEqual(["job"]);
    const twoLabels = (await get("/v1/containers?all=true&label=app=web&label=tier=front")).json();
    expect(twoLabels.containers.map((c: { name: string }) => c.name)).toEqual(["web"]);
    const byState = (await get("/v1/containers?state=exited")).json();
    expect(byState.containers.map((c: { name: string }) => c.name)).toEqual(["job"]);
    expect((await get("/v1/containers?all=true&node=n2")).json().containers).toEqual([]);
  });

  it("rejects unknown and malformed query parameters", async () => {
    for (const url of ["/v1/containers?bogus=1", "/v1/containers?state=sleeping", "/v1/containers?all=maybe", "/v1/events?limit=0", "/v1/events?limit=10001", "/v1/events?since=yesterday", "/v1/state", "/v1/state?at=noon"]) {
      const r = await get(url);
      expect(r.statusCode, url).toBe(400);
      expect(r.json().error.code, url).toBe("InvalidArgument");
    }
  });

  it("inspects by name, id prefix or id, with the spec", async () => {
    for (const ref of ["web", ID.web.slice(0, 5), ID.web]) {
      const r = await get(`/v1/containers/${ref}`);
      expect(r.statusCode).toBe(200);
      expect(r.json()).toMatchObject({ id: ID.web, name: "web", spec: { image: "busybox:latest" }, version: seqs.webStarted });
    }
    const none = await get("/v1/containers/nosuch");
    expect(none.statusCode).toBe(404);
    expect(none.json().error.code).toBe("NotFound");
    expect((await get("/v1/containers/gone")).statusCode).toBe(404);
  });

  it("calls an id prefix shared by two containers ambiguous", async () => {
    const r = await get("/v1/containers/abcd");
    expect(r.statusCode).toBe(400);
    expect(r.json().error).toMatchObject({ code: "InvalidArgument", message: expect.stringMatching(/ambiguous/) });
    // Below 4 characters a prefix is no ref at all.
    expect((await get("/v1/containers/abc")).statusCode).toBe(404);
  });

  it("gives a container's history, also after it was removed", async () => {
    const r = (await get("/v1/containers/job/events")).json();
    expect(r.events.map((e: StoredEvent) => e.type)).toEqual(["ContainerCreated", "ContainerStartRequested", "ContainerStarted", "ContainerExited"]);
    expect(r.events[3]).toMatchObject({ seq: seqs.jobExited, data: { exitCode: 7 }, actor: "test" });
    const gone = (await get(`/v1/containers/${ID.gone}/events`)).json();
    expect(gone.events.at(-1).type).toBe("ContainerRemoved");
    expect((await get(`/v1/containers/${"f".repeat(64)}/events`)).statusCode).toBe(404);
  });

  it("serves logs as text", async () => {
    const r = await get("/v1/containers/web/logs?tail=2");
    expect(r.statusCode).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^text\/plain/);
    expect(r.body).toBe("abcd line 2\nabcd line 3\n");
  });

  it("filters the log by sequence, time, type and container", async () => {
    const all = (await get("/v1/events")).json().events as StoredEvent[];
    expect(all.length).toBe(model.seq);
    expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
    const some = (await get("/v1/events?since=3&until=5")).json().events as StoredEvent[];
    expect(some.map((e) => e.seq)).toEqual([3, 4, 5]);
    const byTime = (await get(`/v1/events?since=${all[2].at}&until=${encodeURIComponent(all[4].at)}`)).json().events as StoredEvent[];
    expect(byTime.map((e) => e.seq)).toEqual([3, 4, 5]);
    const types = (await get("/v1/events?type=ContainerStarted,ContainerExited")).json().events as StoredEvent[];
    expect(types.map((e) => e.type)).toEqual(["ContainerStarted", "ContainerStarted", "ContainerExited"]);
    const job = (await get("/v1/events?container=job&type=ContainerExited")).json().events as StoredEvent[];
    expect(job.map((e) => e.seq)).toEqual([seqs.jobExited]);
    const limited = (await get("/v1/events?limit=2&since=2")).json().events as StoredEvent[];
    expect(limited.map((e) => e.seq)).toEqual([2, 3]);
    expect((await get("/v1/events?container=nosuch")).statusCode).toBe(404);
    // A filter past the container's last event must answer, not wait for one.
    expect((await get(`/v1/events?container=job&since=${seqs.jobExited + 1}`)).json().events).toEqual([]);
  });

  it("travels in time", async () => {
    const before = (await get(`/v1/state?at=${seqs.jobExited - 1}`)).json();
    expect(before.seq).toBe(seqs.jobExited - 1);
    expect(before.containers.map((c: { name: string; state: string }) => [c.name, c.state])).toEqual([["web", "running"], ["job", "running"]]);
    const after = (await get(`/v1/state?at=${seqs.jobExited}`)).json();
    expect(after.containers.find((c: { name: string }) => c.name === "job")).toMatchObject({ state: "exited", exitCode: 7 });
    const removed = (await get(`/v1/state?at=${seqs.goneRemoved - 1}`)).json();
    expect(removed.containers.map((c: { name: string }) => c.name)).toContain("gone");
    expect((await get(`/v1/state?at=${seqs.goneRemoved}`)).json().containers.map((c: { name: string }) => c.name)).not.toContain("gone");
    const events = (await get("/v1/events")).json().events as StoredEvent[];
    const atTime = (await get(`/v1/state?at=${encodeURIComponent(events[seqs.jobExited - 1].at)}`)).json();
    expect(atTime.seq).toBe(seqs.jobExited);
    expect((await get("/v1/state?at=0")).json()).toEqual({ seq: 0, containers: [] });
    expect((await get("/v1/state?at=1999-01-01T00:00:00Z")).json().seq).toBe(0);
  });

  it("lists images, nodes and checkpoints", async () => {
    expect((await get("/v1/images")).json().images).toMatchObject([{ name: "busybox:latest", node: "n1", sizeBytes: 1234 }]);
    expect((await get("/v1/nodes")).json().nodes).toMatchObject([{ name: "n1", version: "0.1.0" }]);
    expect((await get("/v1/checkpoints")).json()).toEqual({ checkpoints: [] });
  });

  it("streams existing and live events as SSE", async () => {
    const next = (await store.lastSeq()) + 1;
    const pending = app.inject({
      method: "GET",
      url: `/v1/events?since=${next - 1}&until=${next}`,
      headers: { ...auth, accept: "text/event-stream" },
    });
    await new Promise((r) => setTimeout(r, 300));
    await created(ID.late, "late");
    const r = await pending;
    expect(r.statusCode).toBe(200);
    expect(r.headers["content-type"]).toMatch(/^text\/event-stream/);
    const frames = r.body.split("\n\n").filter((f) => f.startsWith("id:"));
    expect(frames.map((f) => Number(/^id: (\d+)/.exec(f)![1]))).toEqual([next - 1, next]);
    const live = JSON.parse(frames[1].split("\n").find((l) => l.startsWith("data: "))!.slice(6));
    expect(live).toMatchObject({ seq: next, type: "ContainerCreated", data: { id: ID.late } });
  });

  it("stops the tail when an SSE client goes away", async () => {
    const live = buildHttpServer({
      model, store, token: TOKEN, node: "n1",
      readiness: () => ({ ready: true, phase: "ready" }),
      metrics: createMetrics(model),
      logs: () => Readable.from([]),
    });
    const addr = await live.listen({ host: "127.0.0.1", port: 0 });
    const ac = new AbortController();
    const res = await fetch(`${addr}/v1/events?type=ContainerPaused`, { headers: { ...auth, accept: "text/event-stream" }, signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain(": berth events");
    ac.abort();
    await new Promise((r) => setTimeout(r, 100));
    // A second client still open when the server closes must not hold close() up.
    const res2 = await fetch(`${addr}/v1/events?type=ContainerPaused`, { headers: { ...auth, accept: "text/event-stream" } });
    const reader2 = res2.body!.getReader();
    await reader2.read();
    const t0 = Date.now();
    await live.close();
    expect(Date.now() - t0).toBeLessThan(3000);
    await reader2.cancel().catch(() => undefined);
  });

  it("publishes an OpenAPI 3 document of the /v1 routes", async () => {
    const r = await get("/openapi.json", {});
    expect(r.statusCode).toBe(200);
    const doc = r.json();
    expect(doc.openapi).toMatch(/^3\./);
    for (const p of ["/v1/containers", "/v1/containers/{ref}", "/v1/containers/{ref}/events", "/v1/containers/{ref}/logs", "/v1/events", "/v1/state", "/v1/images", "/v1/nodes", "/v1/checkpoints", "/readyz", "/healthz", "/metrics"]) {
      expect(doc.paths[p], p).toBeDefined();
    }
    expect(doc.paths["/openapi.json"]).toBeUndefined();
    const list = doc.paths["/v1/containers"].get;
    expect(list.security).toEqual([{ bearer: [] }]);
    expect(list.parameters.map((p: { name: string }) => p.name).sort()).toEqual(["all", "label", "node", "state"]);
    const ok = list.responses["200"].content["application/json"].schema;
    expect(Object.keys(ok.properties.containers.items.properties)).toEqual(
      expect.arrayContaining(["id", "name", "image", "imageDigest", "state", "node", "pid", "exitCode", "oomKilled", "restartCount", "health", "createdAt", "startedAt", "finishedAt", "labels", "annotations", "restartPolicy", "version"]),
    );
    expect(doc.paths["/v1/containers/{ref}/logs"].get.responses["200"].content["text/plain"]).toBeDefined();
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("exposes Prometheus metrics", async () => {
    const r = await get("/metrics", {});
    expect(r.headers["content-type"]).toMatch(/^text\/plain/);
    expect(r.body).toMatch(/^berth_containers\{state="running"\} 1$/m);
    expect(r.body).toMatch(/^berth_containers\{state="exited"\} 1$/m);
    expect(r.body).toMatch(new RegExp(`^berth_log_seq ${model.seq}$`, "m"));
    expect(r.body).toMatch(/^berth_transition_anomalies 0$/m);
    expect(r.body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(r.body).toMatch(/^berth_http_requests_total\{route="\/v1\/containers",status="200"\} \d+/m);
  });

  it("answers unknown routes with the error body", async () => {
    const r = await get("/v2/nothing");
    expect(r.statusCode).toBe(404);
    expect(r.json().error.code).toBe("NotFound");
  });
});
