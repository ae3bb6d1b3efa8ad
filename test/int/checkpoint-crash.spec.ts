// The checkpoint's crash matrix (issue 9, story 7): the daemon is killed -9 (BERTH_FAULT) during a
// checkpoint (after its intent, after CRIU's dump, after the upload) and during a restore (after
// its intent, after the archive was fetched); a new daemon on the same data root converges: the
// checkpoint is complete and listed once, or the container still runs — never both gone — and a
// restore yields one running container.
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, ProcSession } from "../support/daemon-proc.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing } from "../support/prereq.js";
import { alive, until } from "../support/proc.js";
import { connectAs } from "../support/roles.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "criu").length > 0;

type C = { id: string; state: string; pid: number | null; pending: string | null; ip: string | null; checkpointed: boolean; checkpoint: string | null };
type Ev = { type: string; causationId: string | null; eventId: string };
const COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done"];

const CASES = [
  // run's start is the daemon's first intent, the checkpoint's the second.
  { saga: "checkpoint", fault: "after-intent:2" },
  { saga: "checkpoint", fault: "checkpoint-dumped:1" },
  { saga: "checkpoint", fault: "checkpoint-uploading:1" },
  { saga: "checkpoint", fault: "checkpoint-uploaded:1" },
  // The restore's daemon dies: its first intent is the restore's.
  { saga: "restore", fault: "after-intent:1" },
  { saga: "restore", fault: "restore-fetched:1" },
] as const;

describe.skipIf(skip)("checkpoint crash matrix", () => {
  let dataRoot: string;
  let session: ProcSession;
  const node = `cpc${randomBytes(3).toString("hex")}`;
  const cmd = (verb: string, body: unknown, timeoutMs?: number) => session.cmd(verb, body, timeoutMs);
  const http = <T>(path: string) => session.http<T>(path);
  const counter = async (id: string) => {
    const r = await cmd("exec", { id, cmd: ["sh", "-c", "while :; do v=$(cat /tmp/n); [ -n \"$v\" ] && exec echo $v; done"], timeoutSec: 20 });
    if (r.error) throw new Error(`exec: ${r.error.code}: ${r.error.message}`);
    return Number((r.result as { stdout: string }).stdout.trim() || "0");
  };

  /** Chunk subjects of the archive bucket that no kept object names. */
  const orphanChunks = async () => {
    const nc = await connectAs(dataRoot, "daemon");
    try {
      const live = new Set((await (await new Objm(nc).open("berth_checkpoints")).list()).map((i) => i.nuid));
      const info = await (await jetstreamManager(nc)).streams.info("OBJ_berth_checkpoints", { subjects_filter: "$O.berth_checkpoints.C.>" });
      return Object.keys(info.state.subjects ?? {}).filter((s) => !live.has(s.split(".").at(-1)!));
    } finally {
      await nc.close();
    }
  };

  beforeAll(async () => {
    dataRoot = await mkdtemp(join(tmpdir(), "berth-cpcrash-"));
    session = new ProcSession(dataRoot, node, await freePort());
    // The next daemon purges what an upload cut short left in the object store once it is 2 s idle.
    session.baseEnv = { BERTH_ARCHIVE_SWEEP_IDLE_MS: "2000" };
  });
  afterAll(async () => {
    await session?.destroy();
  });

  for (const c of CASES) {
    it(`a ${c.saga} dies at ${c.fault}, then converges`, async () => {
      try {
        await crashAndConverge(c.saga, c.fault);
      } finally {
        await session.down();
      }
    });
  }

  async function crashAndConverge(saga: "checkpoint" | "restore", fault: string) {
    let id: string;
    let checkpointId: string | null = null;
    let before = 0;
    if (saga === "checkpoint") {
      await session.up({ BERTH_FAULT: fault });
      id = (await cmd("run", { image: "busybox", cmd: COUNTER })).result!.id as string;
      await until(async () => (await counter(id)) >= 5, 10_000);
      expect(await session.diesDuring("checkpoint", { id })).toBe("died");
    } else {
      await session.up();
      id = (await cmd("run", { image: "busybox", cmd: COUNTER })).result!.id as string;
      await until(async () => (await counter(id)) >= 5, 10_000);
      const cp = await cmd("checkpoint", { id }, 60_000);
      expect(cp.error).toBeUndefined();
      checkpointId = cp.result!.checkpointId as string;
      await session.down();
      await session.up({ BERTH_FAULT: fault });
      expect(await session.diesDuring("restore", { checkpointId })).toBe("died");
    }
    const settled = await session.restartSettled<C>(id, 60_000);
    const { checkpoints } = (await http<{ checkpoints: { checkpointId: string; container: string }[] }>("/v1/checkpoints")).body;
    const mine = checkpoints.filter((k) => k.container === id);
    const { events } = (await http<{ events: Ev[] }>(`/v1/containers/${id}/events`)).body;
    if (saga === "checkpoint") {
      // Never both gone: here the checkpoint is complete (the container is exited, checkpointed, and one checkpoint is listed).
      expect(settled).toMatchObject({ state: "exited", checkpointed: true });
      expect(mine).toHaveLength(1);
      expect(settled.checkpoint).toBe(mine[0].checkpointId);
      expect(events.filter((e) => e.type === "ContainerCheckpointed")).toHaveLength(1);
      expect(events.filter((e) => e.type === "ContainerExited")).toHaveLength(1);
      // And it restores.
      before = 1;
      const r = await cmd("restore", { checkpointId: mine[0].checkpointId }, 60_000);
      expect(r.error).toBeUndefined();
    }
    const running = (await http<C>(`/v1/containers/${id}`)).body;
    expect(running.state).toBe("running");
    expect(alive(running.pid!)).toBe(true);
    // It counts on (the restored process writes /tmp/n every 0.1 s).
    await until(async () => (await counter(id)) > before, 10_000);
    expect(events.filter((e) => e.type === "ContainerRestored").length).toBeLessThanOrEqual(1);
    expect(existsSync(join(dataRoot, "checkpoints")) ? readdirSync(join(dataRoot, "checkpoints")) : []).toEqual([]);
    // The object store holds the chunks of kept archives only (an upload cut short is swept).
    await until(async () => (await orphanChunks()).length === 0, 15_000).catch(async () => expect(await orphanChunks()).toEqual([]));
    expect((await cmd("remove", { id, force: true })).ok).toBe(true);
  }
});
