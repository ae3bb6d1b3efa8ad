// A daemon started on a fresh cluster with one of its three servers down, asking for 3 copies:
// there its creates of the stream and buckets now and then get no answer in time (or, on a
// cluster just started, "no suitable peers for placement"; src/wiring/placement.ts). It waits
// them out instead of failing its start, and is up with 3 replicas of each once the server is
// back. A real 3-server cluster (test/support/nats-cluster.ts) and a real daemon process.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILT, running, startDaemonProc, stopProc, type DaemonProc } from "../support/daemon-proc.js";
import { startNatsCluster, type TestNatsCluster } from "../support/nats-cluster.js";
import { freePort } from "../support/nats.js";
import { IN_CI, missing } from "../support/prereq.js";
import { Paths } from "../../src/runtime/paths.js";

if (!BUILT && IN_CI) throw new Error("dist/ is missing: the test command builds it first");
const skip = !BUILT || missing("nats-server", "runc", "conmon", "root", "busybox image", "cni").length > 0;

describe.skipIf(skip)("a daemon on a cluster that cannot place its replicas yet", () => {
  let cluster: TestNatsCluster;
  let dataRoot: string;
  let d: DaemonProc | null = null;

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 3 });
    dataRoot = await mkdtemp(join(tmpdir(), "berth-place-"));
  }, 60_000);
  afterAll(async () => {
    if (d) await stopProc(d);
    await rm(dataRoot, { recursive: true, force: true });
    await rm(new Paths(dataRoot).socketDir, { recursive: true, force: true });
    await cluster?.stop();
  }, 60_000);

  it("started with a server down, it does not fail; with the server back it is up, stream and buckets of 3 replicas", async () => {
    const third = cluster.nodes[2].name;
    await cluster.kill(third, "SIGKILL");
    const node = `place${Math.random().toString(36).slice(2, 8)}`;
    const started = startDaemonProc(dataRoot, node, await freePort(), {}, ["--nats-url", cluster.url, "--replicas", "3"]);
    started.catch(() => undefined);
    // A while with two servers: it has not given up.
    const early = await Promise.race([started.then(() => "up", (e: Error) => `failed: ${e.message}`), new Promise<string>((r) => setTimeout(() => r("still starting"), 4_000))]);
    expect(early).not.toMatch(/^failed/);
    await cluster.restart(third);
    d = await started;
    expect(running(d)).toBe(true);
    const nc = await connect({ servers: cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      for (const stream of ["BERTH_EVENTS", "KV_berth_requests", "KV_berth_nodes", "OBJ_berth_checkpoints"]) {
        expect((await jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
      }
    } finally {
      await nc.close();
    }
    const ready = await fetch(`${d.client().http.url}/readyz`);
    expect(ready.status).toBe(200);
  }, 90_000);
});
