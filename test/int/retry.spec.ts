// Safe retries: a client that sent a command with a requestId and never got the reply (the daemon
// died after recording the intent, or after acting) sends the same request again, and gets the
// answer its first attempt would have had: the same container, one of everything in the log.
import { randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { idFromRequest } from "../../src/handlers/container-service.js";
import { Paths } from "../../src/runtime/paths.js";
import { BUILT, ProcSession } from "../support/daemon-proc.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing } from "../support/prereq.js";
import { until } from "../support/proc.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image").length > 0;

type Reply = { ok: boolean; result?: Record<string, unknown>; error?: { code: string; message: string } };
type Ev = { type: string; eventId: string; causationId: string | null };

describe.skipIf(skip)("retries with the same requestId", () => {
  let dataRoot: string;
  let natsPort: number;
  let session: ProcSession;
  const node = `retry${randomBytes(3).toString("hex")}`;
  const send = (verb: string, body: unknown, timeoutMs?: number): Promise<Reply> => session.cmd(verb, body, timeoutMs);
  const get = async <T>(path: string): Promise<T> => (await session.http<T>(path)).body;
  const history = async (id: string) => (await get<{ events: Ev[] }>(`/v1/containers/${id}/events`)).events;
  const up = (env: Record<string, string> = {}) => session.up(env);
  const down = () => session.down();
  /** The first attempt: the daemon dies at `point` while handling it, so no reply comes. */
  async function firstAttemptDies(verb: string, body: unknown, point: string): Promise<void> {
    await down();
    await up({ BERTH_FAULT: point });
    await expect(send(verb, body, 5_000)).rejects.toThrow();
    await session.d!.exited;
    await session.nc?.close().catch(() => undefined);
    await up();
  }

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-retry-"));
    natsPort = await freePort();
    session = new ProcSession(dataRoot, node, natsPort);
    await up();
  });
  afterAll(async () => {
    if (session.d && session.nc) {
      const { containers } = await get<{ containers: { id: string }[] }>("/v1/containers?all=true");
      for (const c of containers) await send("remove", { id: c.id, force: true });
    }
    await down();
    await rm(dataRoot, { recursive: true, force: true });
    await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
  });

  const meta = (requestId: string) => ({ meta: { requestId, actor: "retry-test" } });
  const runSleep = async () => (await send("run", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 })).result!.id as string;

  for (const point of ["after-intent", "after-action"]) {
    it(`run: dies ${point}; the retry answers with the container the first attempt made`, async () => {
      const requestId = randomUUID();
      const body = { image: "busybox", cmd: ["sleep", "1000"], name: `r-${randomBytes(3).toString("hex")}`, ...meta(requestId) };
      await firstAttemptDies("run", body, point);
      const again = await send("run", body);
      expect(again).toMatchObject({ ok: true, result: { id: idFromRequest("container", requestId), name: body.name, state: "running" } });
      const id = again.result!.id as string;
      const { containers } = await get<{ containers: { id: string; name: string }[] }>("/v1/containers?all=true");
      expect(containers.filter((c) => c.name === body.name).map((c) => c.id)).toEqual([id]);
      const evs = await history(id);
      expect(evs.filter((e) => e.type === "ContainerCreated")).toHaveLength(1);
      expect(evs.filter((e) => e.type === "ContainerStartRequested")).toHaveLength(1);
      expect(evs.filter((e) => e.type === "ContainerStarted")).toHaveLength(1);
      // And a third time: the kept answer.
      expect(await send("run", body)).toEqual(again);
    }, 120_000);
  }

  const prepared = {
    start: async () => (await send("create", { image: "busybox", cmd: ["sleep", "1000"], stopTimeoutSec: 1 })).result!.id as string,
    stop: runSleep,
    remove: runSleep,
  };
  const answers: Record<keyof typeof prepared, (id: string) => Record<string, unknown>> = {
    start: (id) => ({ ok: true, result: { id, state: "running", pid: expect.any(Number) } }),
    stop: (id) => ({ ok: true, result: { id, state: "exited", exitCode: expect.any(Number) } }),
    // The container is gone by now: the retry still answers for it, instead of NotFound.
    remove: (id) => ({ ok: true, result: { id } }),
  };
  const intents = { start: "ContainerStartRequested", stop: "ContainerStopRequested", remove: "ContainerRemoveRequested" };
  for (const verb of ["start", "stop", "remove"] as const) {
    it(`${verb}: dies after its intent; the retry gets its own command's answer, and the log holds it once`, async () => {
      const id = await prepared[verb]();
      const body = { id, ...(verb === "stop" ? { timeoutSec: 1 } : verb === "remove" ? { force: true } : {}), ...meta(randomUUID()) };
      await firstAttemptDies(verb, body, "after-intent");
      const again = await send(verb, body);
      expect(again).toMatchObject(answers[verb](id));
      expect((await history(id)).filter((e) => e.type === intents[verb])).toHaveLength(1);
    }, 120_000);
  }

  it("a retry that names a container by a name now worn by another acts on the first one", async () => {
    const name = `n-${randomBytes(3).toString("hex")}`;
    const first = (await send("run", { image: "busybox", cmd: ["sleep", "1000"], name, stopTimeoutSec: 1 })).result!.id as string;
    const remove = { id: name, force: true, ...meta(randomUUID()) };
    await firstAttemptDies("remove", remove, "after-action");
    // Recovery finishes the remove the dead daemon had done on the host; then the name is free.
    await until(async () => (await get<{ error?: unknown }>(`/v1/containers/${first}`)).error !== undefined);
    const second = (await send("run", { image: "busybox", cmd: ["sleep", "1000"], name, stopTimeoutSec: 1 })).result!.id as string;
    expect(await send("remove", remove)).toEqual({ ok: true, result: { id: first } });
    expect((await get<{ state: string }>(`/v1/containers/${second}`)).state).toBe("running");
    await send("remove", { id: second, force: true });
  }, 120_000);

  it("a repeat with the same requestId and another body is InvalidArgument and changes nothing", async () => {
    const id = await runSleep();
    const requestId = randomUUID();
    expect(await send("stop", { id, timeoutSec: 1, ...meta(requestId) })).toMatchObject({ ok: true });
    const before = (await history(id)).length;
    const other = await send("stop", { id, timeoutSec: 5, ...meta(requestId) });
    expect(other).toMatchObject({ ok: false, error: { code: "InvalidArgument", message: expect.stringMatching(/requestId/) } });
    const run = await send("run", { image: "busybox", cmd: ["true"], ...meta(requestId) });
    // Another verb is another request: the key is the verb and the requestId.
    expect(run.ok).toBe(true);
    expect(await send("run", { image: "busybox", cmd: ["false"], ...meta(requestId) })).toMatchObject({ ok: false, error: { code: "InvalidArgument" } });
    expect((await history(id)).length).toBe(before);
  });
  it("exec: a repeat after the daemon died mid-run does not run the command again", async () => {
    const id = await runSleep();
    const runs = join(dataRoot, "containers", id, "rootfs", "tmp", "runs");
    const body = { id, cmd: ["sh", "-c", "echo run >> /tmp/runs; sleep 3"], ...meta(randomUUID()) };
    const first = session.nc!.request("berth.cmd.container.exec", JSON.stringify(body), { timeout: 20_000 }).catch(() => null);
    await until(async () => existsSync(runs));
    await session.down("SIGKILL");
    await first;
    await up();
    const again = await (await session.nc!.request("berth.cmd.container.exec", JSON.stringify(body), { timeout: 20_000 })).json<Reply>();
    expect(again).toMatchObject({ ok: false, error: { code: "Conflict", message: expect.stringMatching(/not run again/) } });
    expect(readFileSync(runs, "utf8")).toBe("run\n");
    expect((await history(id)).filter((e) => e.type === "ContainerExecStarted")).toHaveLength(1);
    await send("remove", { id, force: true });
  }, 120_000);
});
