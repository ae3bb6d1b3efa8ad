// Wiring only: start (or reach) NATS, open the log, replay it, hand this node's containers back
// to the executor, then open the command and query doors.
import { mkdir, readFile, writeFile, rm } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { connect, credsAuthenticator, type Msg, type NatsConnection } from "@nats-io/transport-node";
import type { FastifyInstance } from "fastify";
import { DEFAULT_MIGRATION_LISTEN, DEFAULT_NATS_SYNC, DEFAULT_OFFLINE_AFTER_SEC, checkOptions, clusterReplicas, loadSecrets, parseListen, splitNatsUrl, writeAuditorConfig, writeClientConfig, type DaemonOptions } from "./config.js";
import { EventStore } from "./events/store.js";
import { containerSubject, nodeSubject, podSubject } from "./events/types.js";
import { logger } from "./log.js";
import { Projector } from "./projections/projector.js";
import { SnapshotStore } from "./projections/snapshot.js";
import { SnapshotWriter } from "./projections/snapshot-writer.js";
import { DEFAULT_GRACE_MS } from "./handlers/checkpointer.js";
import { CommandService, envelope } from "./handlers/command-service.js";
import { containerDecider } from "./aggregates/container/index.js";
import { ContainerService } from "./handlers/container-service.js";
import { Executor } from "./handlers/executor.js";
import { CheckpointService } from "./handlers/checkpoint-service.js";
import { checkpointDecider } from "./aggregates/checkpoint/index.js";
import { CheckpointArchive } from "./runtime/checkpoint-archive.js";
import { ARCHIVE_FETCH, fetchArchive, serveArchive } from "./runtime/archive-transfer.js";
import { FORWARD } from "./contract/client.js";
import { BerthError, ErrorCode } from "./shared/errors.js";
import { HealthMonitor } from "./handlers/health-monitor.js";
import { ImageService } from "./handlers/image-service.js";
import { ExecService } from "./handlers/exec-service.js";
import { AttachService } from "./handlers/attach-service.js";
import { NatsCommandService } from "./api/nats-service.js";
import { buildHttpServer } from "./api/http.js";
import { createMetrics } from "./api/metrics.js";
import { startEmbeddedNats, pidAlive, type EmbeddedNats } from "./runtime/nats-server.js";
import { processStart } from "./runtime/session.js";
import { daemonInboxPrefix } from "./runtime/nats-roles.js";
import { HostRuntime } from "./runtime/host.js";
import { ImageStore } from "./runtime/images.js";
import { validateMountSources } from "./runtime/mounts.js";
import { PodService } from "./handlers/pod-service.js";
import { nameDecider } from "./aggregates/name/index.js";
import { NodePresence } from "./wiring/presence.js";
import { ownerOf } from "./handlers/ownership.js";
import { whenPlaceable } from "./wiring/placement.js";
import { podDecider } from "./aggregates/pod/index.js";
import { localCopyPort, networkPort, hostOps, recoveryHost } from "./wiring/host-adapter.js";
import { LocalCheckpointKeeper } from "./handlers/local-checkpoints.js";
import { flushOfflineJournal, OfflineMode, reconcileLocalCopies } from "./wiring/offline.js";
import { runRecovery } from "./handlers/recovery.js";
import { randomUUID } from "node:crypto";

export const VERSION = "0.1.0";

export interface Daemon {
  options: DaemonOptions;
  natsUrl: string;
  httpUrl: string;
  stop(): Promise<void>;
}

/** Start a daemon and return once it is ready (recovery is done). */
export async function startDaemon(o: DaemonOptions): Promise<Daemon> {
  checkOptions(o);
  const log = logger("daemon", { node: o.node });
  const t0 = performance.now();
  // Where the start's time goes, logged with "berth daemon ready": ms since t0 at the end of each step.
  const marks: Record<string, number> = {};
  const mark = (step: string) => (marks[step] = Math.round(performance.now() - t0));
  let phase = "starting";
  await mkdir(o.dataRoot, { recursive: true, mode: 0o700 });
  await takeLock(o.dataRoot);
  const secrets = await loadSecrets(o.dataRoot);
  mark("lockAndSecrets");

  const runtime = new HostRuntime({
    dataRoot: o.dataRoot,
    node: o.node,
    log: logger("runtime", { node: o.node }),
    logPolicy: { maxSizeBytes: o.logMaxSize, maxFiles: o.logMaxFiles },
    subnet: o.subnet,
  });
  await runtime.init();
  const imageStore = new ImageStore({ dataRoot: o.dataRoot, log: logger("runtime.images", { node: o.node }) });
  mark("runtimeReady");

  let embedded: EmbeddedNats | null = null;
  let nc: NatsConnection;
  let servers: string[];
  // An external log not reachable for --offline-after: the local checkpoints run meanwhile.
  let offline: OfflineMode | null = null;
  if (o.natsUrl) {
    const { servers: urls, ...auth } = splitNatsUrl(o.natsUrl);
    servers = urls;
    const connecting = connect({
      servers,
      ...auth,
      name: `berth-${o.node}`,
      inboxPrefix: daemonInboxPrefix(o.node),
      ...(o.natsCreds ? { authenticator: credsAuthenticator(await readFile(o.natsCreds)) } : {}),
      maxReconnectAttempts: -1,
      waitOnFirstConnect: true,
    });
    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([connecting, new Promise<null>((r) => (timer = setTimeout(() => r(null), (o.offlineAfterSec ?? DEFAULT_OFFLINE_AFTER_SEC) * 1000)))]);
    clearTimeout(timer);
    if (first) nc = first;
    else {
      phase = "offline";
      log.warn({ servers, afterSec: o.offlineAfterSec ?? DEFAULT_OFFLINE_AFTER_SEC }, "the log cannot be reached: starting the local checkpoints");
      offline = await OfflineMode.start({
        node: o.node, host: hostOps(runtime, imageStore), copiesDir: runtime.paths.localCheckpointsDir, journalFile: runtime.paths.offlineJournal,
        livePid: (id) => livePid(runtime, id), watchExits: (cb) => runtime.watchExits(cb), health: runtime, log: logger("offline", { node: o.node }),
      });
      const url = await offline.serve(parseListen(o.httpListen), secrets.httpToken);
      await writeClientConfig(o.dataRoot, {
        node: o.node,
        nats: { servers, ...(o.natsCreds ? { creds: o.natsCreds } : {}), ...clientUserOf(o.clientUser) },
        http: { url, token: secrets.httpToken },
      });
      nc = await connecting;
      log.info("the log is reachable again");
      await offline.closeHttp();
    }
  } else {
    embedded = await startEmbeddedNats({
      dir: join(o.dataRoot, "nats"),
      port: o.natsPort,
      user: secrets.natsUser,
      pass: secrets.natsPass,
      client: secrets.client,
      auditor: secrets.auditor,
      syncInterval: o.natsSync ?? DEFAULT_NATS_SYNC,
    });
    mark("embeddedNats");
    servers = [embedded.url];
    nc = await connect({ servers, user: secrets.natsUser, pass: secrets.natsPass, name: `berth-${o.node}`, inboxPrefix: daemonInboxPrefix(o.node), maxReconnectAttempts: -1 });
  }

  mark("natsConnected");
  // On a JetStream cluster, the stream and every bucket are replicated (up to 3 copies).
  const replicas = o.replicas ?? clusterReplicas(nc.info);
  const store = await whenPlaceable("the event stream", () => EventStore.open(nc, { replicas }), log);
  mark("storeOpened");
  const projector = new Projector(store);
  // Slow reads recovery needs, started now so they overlap the doors' opening (schema
  // compilation keeps this thread busy): `runc list` (a few hundred ms with hundreds of
  // containers) and the snapshot (KV reads, gunzip). Both are host or log facts that no one else
  // changes meanwhile: the previous daemon of this data root is gone (takeLock).
  const runcListed = runtime.list();
  runcListed.catch(() => undefined);
  // A snapshot only saves replay time: without the bucket, replay everything and write none.
  const snapshotsOpened = whenPlaceable("the snapshot bucket", () => SnapshotStore.open(nc, { replicas }), log).catch((err) => (log.warn({ err }, "snapshot bucket unavailable: full replay"), null));
  const snapshotLoaded = snapshotsOpened.then((s) => s?.load(o.node) ?? null);
  const commands = new CommandService(store, projector).for(containerDecider);
  const names = new CommandService(store, projector).for(nameDecider);
  // Without the presence bucket nothing is known: up. With it, a node not beating is down.
  const nodeUp = (node: string) => node === o.node || !presence || (presence.of(node)?.up ?? false);
  const containers = new ContainerService({
    node: o.node,
    projector,
    commands,
    validateMounts: (spec) => validateMountSources(spec.mounts, o.dataRoot),
    history: (id) => store.readSubject(containerSubject(id)),
    network: networkPort(runtime),
    names,
    nodeUp,
  });
  const images = new ImageService(o.node, store, projector, imageStore);
  // Checkpoint archives: without the object store the checkpoint verbs are unknown, nothing else.
  const archive = await whenPlaceable("the checkpoint bucket", () => CheckpointArchive.open(nc, replicas), log).catch((err) => (log.warn({ err }, "checkpoint bucket unavailable: no checkpoints"), null));
  const checkpointCommands = new CommandService(store, projector).for(checkpointDecider);
  const checkpoints = archive ? new CheckpointService({ node: o.node, projector, checkpoints: checkpointCommands, archive, host: runtime }) : undefined;
  // A migration's archive goes straight to its target's daemon ("direct", archive-transfer.ts) or
  // through the object store ("store": it outlives the loss of the source host, at the cost of
  // three replicated writes before the target may start: BENCH_SECTIONS=migrate has the figures).
  const direct = {
    fetch: (node: string, checkpointId: string, tcp?: boolean) => fetchArchive(nc, `${FORWARD}.${node}.${ARCHIVE_FETCH}`, checkpointId, runtime.checkpointSink(checkpointId), { inboxPrefix: daemonInboxPrefix(o.node), tcp }),
  };
  const executor = new Executor(o.node, projector, commands, hostOps(runtime, imageStore), archive ? { checkpoints: checkpointCommands, archive, direct, transfer: o.migrationTransfer ?? "direct" } : undefined, names, nodeUp);
  const serveArchiveTo = (msg: Msg) =>
    void serveArchive(nc, msg, (checkpointId, replyTo) => {
      if (phase !== "ready") throw new BerthError(ErrorCode.Unavailable, `node ${o.node}'s daemon is still starting`);
      return executor.archiveFor(checkpointId, (node) => replyTo.startsWith(`${daemonInboxPrefix(node)}.`));
    }, { inboxPrefix: daemonInboxPrefix(o.node), tcpHost: o.migrationListen ?? DEFAULT_MIGRATION_LISTEN });
  const pods = new PodService({
    node: o.node,
    projector,
    pods: new CommandService(store, projector).for(podDecider),
    containers,
    network: networkPort(runtime),
    host: { removePod: (id) => runtime.removePod(id) },
    checkpoints,
    names,
    migration: { containers: commands, executor, nodeUp, history: (id) => store.readSubject(podSubject(id)) },
  });
  const metrics = createMetrics(projector.model);
  const exec = new ExecService({ node: o.node, projector, commands, host: runtime, history: (id) => store.readSubject(containerSubject(id)) });
  const attach = new AttachService({ node: o.node, projector, containers, host: runtime });

  // The doors open first: until recovery is over, commands get Unavailable and
  // /readyz (and /v1) answer 503 with the phase.
  const nats = new NatsCommandService({ streams: { [ARCHIVE_FETCH]: serveArchiveTo }, node: o.node, ownerOf: (verb, body) => ownerOf(projector.model, verb, body), catchUp: (since) => projector.catchUp(5_000, since), seq: () => projector.model.seq, replicas, nc, containers, images, exec, pods, checkpoints, metrics, ready: () => phase === "ready" });
  await whenPlaceable("the request journal", () => nats.start(), log);
  mark("commandDoorOpen");

  // Heartbeats: which nodes' daemons answer (GET /v1/nodes `up`); without the bucket, none shown up.
  const presence = await whenPlaceable("the node presence bucket", () => NodePresence.open(nc, o.node, replicas), log).catch((err) => (log.warn({ err }, "node presence bucket unavailable"), null));
  await presence?.start().catch((err) => log.warn({ err }, "node presence not started"));
  let keeper: LocalCheckpointKeeper | null = null;
  const listen = parseListen(o.httpListen);
  const http: FastifyInstance = buildHttpServer({
    model: projector.model,
    store,
    token: secrets.httpToken,
    node: o.node,
    readiness: () => ({ ready: phase === "ready", phase }),
    metrics,
    logs: (id, q) => runtime.readLogs(id, q),
    exec,
    attach,
    checkpoints,
    presence: (node) => presence?.of(node) ?? null,
    localCheckpoint: (id) => keeper?.info(id) ?? null,
  });
  await http.listen({ host: listen.host, port: listen.port });
  const addr = http.server.address();
  const port = typeof addr === "object" && addr ? addr.port : listen.port;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  const httpUrl = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${port}`;
  mark("httpListening");

  phase = "replaying";
  const snapshots = await snapshotsOpened;
  const snapshot = await snapshotLoaded;
  mark("snapshotLoaded");
  const replay = await projector.start({ snapshot });
  mark("replayed");
  // An offline span's facts (this start's, or one a killed daemon left), once, before recovery
  // reads the host against the log.
  await offline?.handBack();
  if (await flushOfflineJournal(runtime.paths.offlineJournal, o.node, store, projector.model, logger("offline", { node: o.node }))) {
    await projector.waitForSeq(await store.lastSeq(), 30_000);
  }
  // Copies whose container the log says is gone from this node: what runs of them stops now.
  const graceMs = (o.checkpointGraceSec ?? DEFAULT_GRACE_MS / 1000) * 1000;
  const handedBack = new Set(await reconcileLocalCopies({
    node: o.node, copiesDir: runtime.paths.localCheckpointsDir, model: projector.model, livePid: (id) => livePid(runtime, id),
    discard: (id) => executor.discard(id), graceMs, log: logger("offline", { node: o.node }),
  }).catch((err) => (log.warn({ err }, "could not reconcile the local checkpoints"), [] as string[])));
  mark("offlineFlushed");
  log.info({ events: replay.events, ms: Math.round(replay.durationMs), fromSnapshot: replay.fromSnapshot, snapshotSeq: replay.snapshotSeq }, "log replayed");
  const snapshotWriter = snapshots && new SnapshotWriter({ snapshots, node: o.node, projector, events: store, fromSeq: replay.snapshotSeq ?? 0 });
  snapshotWriter?.start();

  phase = "reconciling";
  // Facts first: exits that happened while no daemon watched are recorded before any intent or
  // policy acts on these containers.
  const restored = await runRecovery(
    { node: o.node, host: { ...recoveryHost(runtime, imageStore), list: async () => (await runcListed).filter((r) => !handedBack.has(r.id)) }, executor, commands, gcOrphans: o.gcOrphans ?? false, log },
    projector.model,
  );
  mark("runtimeSynced");
  await executor.sweepCheckpointDirs().catch((err) => log.warn({ err }, "could not sweep the local checkpoint dirs"));
  executor.start();
  // Restarts the log shows scheduled: due ones (the daemon was down) fire now.
  executor.restarts.rearm();
  // Pod checkpoints a killed daemon left under way go on (their members' steps need the executor).
  pods.checkpoints?.resume();
  // Pod migrations under way, this node's side of them (and the steps the log gives it from now on).
  pods.migrations?.start();
  pods.migrations?.resume();
  // Health checks of running containers resume with the status the log has.
  const health = new HealthMonitor(o.node, projector, commands, runtime);
  health.start();
  // Local copies of this node's critical containers (berth.io/checkpoint=true), made current from the log.
  keeper = new LocalCheckpointKeeper(o.node, projector, await localCopyPort(runtime.paths.localCheckpointsDir, o.node, logger("runtime.local-checkpoints", { node: o.node })), graceMs);
  await keeper.start();
  const stopWatch = runtime.watchExits((id) => executor.exited(id));
  const stopRotation = runtime.rotateLogs();
  mark("executorStarted");
  await ensureSeedImage(o, imageStore, images, log);
  // Chunks of archive uploads a killed daemon left unfinished (in the background; the store is
  // shared): at the start and then once per idle window, since an upload cut short by a crash
  // is still too fresh to tell from one in progress when the daemon comes back.
  const sweepIdleMs = Number(process.env.BERTH_ARCHIVE_SWEEP_IDLE_MS ?? 60_000);
  const sweep = () =>
    archive
      ?.sweep(sweepIdleMs)
      .then((swept) => swept.length && log.info({ swept: swept.length }, "unfinished checkpoint uploads purged"))
      .catch((err) => log.warn({ err }, "could not sweep unfinished checkpoint uploads"));
  void sweep();
  const sweepTimer = archive ? setInterval(() => void sweep(), Math.max(1_000, sweepIdleMs)) : null;
  sweepTimer?.unref();
  mark("seedImageChecked");

  await store.append(
    nodeSubject(o.node),
    envelope(
      { type: "NodeStarted", data: { httpUrl, version: VERSION, dataRoot: o.dataRoot } },
      { node: o.node, actor: `berth/${o.node}`, correlationId: randomUUID(), causationId: null },
      randomUUID(),
    ),
  );
  await store.append(
    nodeSubject(o.node),
    envelope(
      {
        type: "NodeRestored",
        data: { containers: restored.containers, failed: restored.failed, orphans: restored.orphans, durationMs: Math.round(performance.now() - t0) },
      },
      { node: o.node, actor: `berth/${o.node}`, correlationId: randomUUID(), causationId: null },
      randomUUID(),
    ),
  );
  mark("nodeEventsAppended");
  // auditor.json first: client.json's appearance is what waiting tools take for "up".
  if (embedded) await writeAuditorConfig(o.dataRoot, { node: o.node, nats: { servers, user: secrets.auditor.user, pass: secrets.auditor.pass } });
  await writeClientConfig(o.dataRoot, {
    node: o.node,
    nats: embedded
      ? { servers, user: secrets.client.user, pass: secrets.client.pass }
      : { servers, ...(o.natsCreds ? { creds: o.natsCreds } : {}), ...clientUserOf(o.clientUser) },
    http: { url: httpUrl, token: secrets.httpToken },
  });
  phase = "ready";
  mark("ready");
  // processMs: from the process's start to startDaemon (node itself, module loading).
  log.info({ ms: Math.round(performance.now() - t0), processMs: Math.round(t0), steps: marks, nats: servers.join(","), http: httpUrl }, "berth daemon ready");

  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      phase = "stopping";
      await http.close().catch(() => undefined);
      // Exec sessions end with the daemon (their end is recorded); a command waiting for one must not hold the stop.
      await exec.stop();
      pods.checkpoints?.stop();
      pods.migrations?.stop();
      keeper?.stop();
      if (sweepTimer) clearInterval(sweepTimer);
      await presence?.stop();
      attach.stop();
      await nats.stop();
      stopWatch();
      stopRotation();
      await health.stop();
      await executor.drain();
      await projector.stop();
      await snapshotWriter?.stop({ final: true });
      await nc.drain().catch(() => undefined);
      // Containers keep running under their conmons; only our own nats-server stops.
      await embedded?.stop();
      await runtime.releaseCgroups();
      // The bridge (and portmap's shared chains) go with the last attachment, at a clean stop.
      await runtime.network.releaseIfUnused().catch((err) => log.warn({ err }, "could not remove the bridge"));
      await rm(join(o.dataRoot, "berth.pid"), { force: true });
      log.info("berth daemon stopped");
    })());
  return { options: o, natsUrl: servers[0], httpUrl, stop };
}

/**
 * `berth daemon`: run in the foreground until SIGINT/SIGTERM. The handlers are in place before the
 * start begins: a signal that arrives while it runs (or just after "ready" is printed) stops the
 * daemon cleanly once the start is done, instead of killing it half-way with the default action.
 */
export async function runDaemon(o: DaemonOptions): Promise<void> {
  let signalled: ((sig: NodeJS.Signals) => void) | null = null;
  const got = new Promise<NodeJS.Signals>((resolve) => (signalled = resolve));
  const onSignal = (sig: NodeJS.Signals) => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    // A stop that cannot finish (its NATS gone for good) must not keep the process: containers
    // do not depend on it. A second signal ends it at once.
    const force = (why: string) => {
      logger("daemon").error({ signal: sig }, `${why}; exiting without a clean stop`);
      process.exit(1);
    };
    setTimeout(() => force(`stop took more than ${STOP_TIMEOUT_MS} ms`), STOP_TIMEOUT_MS).unref();
    process.once("SIGINT", () => force("second signal"));
    process.once("SIGTERM", () => force("second signal"));
    signalled!(sig);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const d = await startDaemon(o).catch((err: unknown) => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    throw err;
  });
  await got;
  await d.stop();
}

const STOP_TIMEOUT_MS = 20_000;

/** The pid of a container's process when it runs (or is paused) on this host now. */
async function livePid(runtime: HostRuntime, id: string): Promise<number | null> {
  const st = await runtime.state(id);
  return st && (st.status === "running" || st.status === "paused") ? st.pid : null;
}

/**
 * One daemon per data root: a second one would fight over the same containers. The lock file
 * holds the daemon's pid and its process start time, so that a pid reused by another process
 * after a kill -9 (pid_max is 32768 here: it wraps within a test run) is not taken for it.
 */
async function takeLock(dataRoot: string): Promise<void> {
  const p = join(dataRoot, "berth.pid");
  if (existsSync(p)) {
    const [pidText, start] = (await readFile(p, "utf8")).trim().split(" ");
    const pid = Number(pidText);
    if (pid !== process.pid && Number.isInteger(pid) && pid > 0 && pidAlive(pid)) {
      // A lock without a start time (an older daemon's): the process's command line decides.
      const same = start ? (await processStart(pid)) === start : /node|berth/.test(await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => ""));
      if (same) throw new Error(`another berth daemon (pid ${pid}) uses ${dataRoot}`);
    }
  }
  await writeFile(p, `${process.pid} ${(await processStart(process.pid)) ?? ""}\n`.replace(" \n", "\n"), { mode: 0o600 });
}

async function ensureSeedImage(
  o: DaemonOptions,
  imageStore: ImageStore,
  images: ImageService,
  log: ReturnType<typeof logger>,
): Promise<void> {
  const name = "busybox:latest";
  let img = await imageStore.resolve(name);
  if (!img) {
    if (!existsSync(o.seedImage)) {
      log.warn({ path: o.seedImage }, "seed image archive missing: run deploy/setup.sh");
      return;
    }
    img = await imageStore.import(`oci-archive:${o.seedImage}`, name);
  }
  await images.record(img);
}

/** `--client-user user:password` as client.json's NATS login (the password may hold colons). */
function clientUserOf(v: string | undefined): { user?: string; pass?: string } {
  if (!v) return {};
  const i = v.indexOf(":");
  return { user: v.slice(0, i), pass: v.slice(i + 1) };
}
