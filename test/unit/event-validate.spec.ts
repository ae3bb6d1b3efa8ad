// The check of every message read back from the stream (validate.ts), and the read model's
// quarantine of what fails it or the transition table.
import { describe, expect, it } from "vitest";
import { PAYLOADS } from "../../src/events/event-schemas.js";
import { containerSubject, nameKey, nameSubject, podSubject, checkpointSubject, imageSubject, nodeSubject, type EventType, type StoredEvent } from "../../src/events/types.js";
import { admit, isRejected, type RejectedEvent } from "../../src/events/validate.js";
import { ReadModel } from "../../src/projections/read-model.js";

const ID = "c0ffee" + "0".repeat(58);
const DIGEST = "sha256:" + "ab".repeat(32);
const AT = "2026-01-02T03:04:05.678Z";
const enc = (o: unknown) => new TextEncoder().encode(typeof o === "string" ? o : JSON.stringify(o));
const env = (type: string, data: unknown, extra: Record<string, unknown> = {}) => ({
  type, v: 1, eventId: "e-1", at: AT, node: "n1", actor: "alice", correlationId: "c-1", causationId: null, data, ...extra,
});

/** One valid payload per type, as the writers make them. */
const VALID: Record<EventType, unknown> = {
  ContainerCreated: { id: ID, name: "web", image: "busybox:latest", imageDigest: DIGEST, node: "n1", spec: { image: "busybox:latest", name: "web", cmd: ["sleep", "1"], node: "n1" } },
  ContainerStartRequested: { attempt: 2 },
  ContainerStarted: { pid: 4242, startedAt: AT, ip: "10.89.3.7" },
  ContainerStartFailed: { error: "runc create: boom" },
  ContainerStopRequested: { signal: "SIGTERM", timeoutSec: 10 },
  ContainerKillRequested: { signal: "SIGKILL" },
  ContainerSignaled: { signal: "9" },
  ContainerRestartRequested: { timeoutSec: 5 },
  ContainerExited: { exitCode: 137, oomKilled: false, exitedAt: AT },
  ContainerPauseRequested: {},
  ContainerPaused: {},
  ContainerUnpauseRequested: {},
  ContainerUnpaused: {},
  ContainerUpdated: { restartPolicy: { name: "always" }, healthcheck: null },
  ContainerRemoveRequested: { force: true },
  ContainerNetworkDetached: { ip: "10.89.3.7" },
  PodCreated: { id: ID, name: "app", node: "n1", spec: { name: "app", share: ["net", "ipc", "uts"], network: { mode: "bridge", ports: [{ hostPort: 9090, containerPort: 90 }] } } },
  PodStarted: { ip: "10.89.3.8", containers: [ID] },
  PodStopped: { containers: [ID] },
  PodRemoved: { containers: [] },
  NameClaimed: { name: "web", kind: "container", owner: ID },
  NameReleased: { name: "web", kind: "container", owner: ID },
  PodCheckpointRequested: { checkpointId: ID, leaveRunning: false, tcpEstablished: false, fileLocks: false, members: [ID], pausedBefore: [] },
  PodCheckpointed: { checkpointId: ID, leaveRunning: false },
  PodCheckpointFailed: { checkpointId: ID, reason: "dump b: criu failed" },
  PodRestored: { checkpointId: ID, containers: [ID] },
  PodMigrationRequested: { checkpointId: ID, fromNode: "n1", toNode: "n2", preCopy: false },
  PodMigrationDumped: { checkpointId: ID, dumpedAt: AT, frozenAt: AT },
  PodMigrationRestoreFailed: { checkpointId: ID, node: "n2", reason: "no image" },
  PodMigrated: { checkpointId: ID, fromNode: "n1", toNode: "n2", downtimeMs: 900, ip: "10.89.4.9", containers: [ID] },
  PodMigrationFailed: { checkpointId: ID, node: "n1", reason: "no image", compensated: true },
  ContainerRemoved: {},
  ContainerRestartScheduled: { attempt: 1, delayMs: 100 },
  ContainerRestartCancelled: {},
  ContainerHealthChanged: { status: "unhealthy", failingStreak: 3, output: "no" },
  ContainerRestoreFailed: { reason: "image gone" },
  ContainerActionFailed: { action: "stop", error: "boom" },
  ContainerExecStarted: { execId: "x1", cmd: ["sh", "-c", "true"], user: "" },
  ContainerExecExited: { execId: "x1", exitCode: 0 },
  ContainerUpgradeRequested: { revision: 1, image: "busybox:v2", imageDigest: DIGEST, spec: { image: "busybox:v2", cmd: ["sleep", "1"] }, healthGateSec: 3 },
  ContainerRollbackRequested: { revision: 0 },
  ContainerRevisionActivated: { revision: 1 },
  ContainerUpgradeFailed: { reason: "start: no such file" },
  ContainerUpgraded: { fromImage: "busybox:latest", fromDigest: DIGEST, toImage: "busybox:v2", toDigest: DIGEST, revision: 1 },
  ContainerUpgradeRolledBack: { reason: "requested", revision: 0, image: "busybox:latest", imageDigest: DIGEST, fromRevision: 1 },
  ContainerCheckpointRequested: { checkpointId: ID, leaveRunning: false, tcpEstablished: false, fileLocks: false },
  ContainerCheckpointed: { checkpointId: ID, leaveRunning: false },
  ContainerRestoreRequested: { checkpointId: ID },
  ContainerMigrationRequested: { checkpointId: ID, fromNode: "n1", toNode: "n2", preCopy: false },
  ContainerMigrationDumped: { checkpointId: ID, dumpedAt: AT, frozenMs: 120 },
  ContainerMigrationRestoreFailed: { checkpointId: ID, node: "n2", reason: "criu restore failed" },
  ContainerMigrated: { checkpointId: ID, fromNode: "n1", toNode: "n2", downtimeMs: 400, pid: 77, startedAt: AT, ip: "10.89.4.7" },
  MigrationFailed: { checkpointId: ID, node: "n1", reason: "criu restore failed", compensated: true, pid: 78, startedAt: AT },
  ContainerRestored: { checkpointId: ID, pid: 77, startedAt: AT, ip: "10.89.3.7" },
  CheckpointCreated: {
    checkpointId: ID, container: ID, containerName: "web", pod: null, node: "n1", image: "busybox:latest", imageDigest: DIGEST,
    spec: { image: "busybox:latest", cmd: ["sleep", "1"] }, ip: "10.89.3.7", sizeBytes: 4096, digest: "SHA-256=abc", durationMs: 300,
    frozenMs: 120, dumpMs: 200, uploadMs: 100, leaveRunning: false, tcpEstablished: false,
    stats: { freezingMs: 1, frozenMs: 120, memdumpMs: 5, memwriteMs: 3, pagesScanned: 100, pagesWritten: 40 },
  },
  PodCheckpointCreated: {
    checkpointId: ID, pod: ID, podName: "app", node: "n1", podSpec: { name: "app", share: ["net"] }, ip: "10.89.3.9",
    members: [{ container: ID, name: "app-a", checkpointId: ID }], sizeBytes: 8192, durationMs: 900, frozenMs: 500, leaveRunning: false, tcpEstablished: false,
  },
  CheckpointRestored: { checkpointId: ID, container: ID, durationMs: 200 },
  CheckpointRemoved: { checkpointId: ID, reason: "retention" },
  ImageImported: { name: "busybox:latest", digest: DIGEST, sizeBytes: 1, config: { entrypoint: null, cmd: ["sh"], env: [], workdir: "/", user: "", stopSignal: null, labels: {} } },
  ImageRemoved: { name: "busybox:latest", digest: DIGEST },
  NodeStarted: { httpUrl: "http://127.0.0.1:1", version: "0.1.0", dataRoot: "/var/lib/berth" },
  NodeRestored: { containers: 1, durationMs: 2, failed: 0, orphans: [] },
  NodeOffline: { since: "2026-12-02T00:00:00.000Z", started: ["a".repeat(64)] },
  NodeOnline: { since: "2026-12-02T00:00:00.000Z", at: "2026-12-02T00:00:05.000Z", spanMs: 5000, facts: 2 },
};
const subjectOf = (t: string) =>
  t.startsWith("Name") ? nameSubject(nameKey("container", "web")) : t.startsWith("Image") ? imageSubject(DIGEST) : t.startsWith("Node") ? nodeSubject("n1") : t.startsWith("Checkpoint") || t === "PodCheckpointCreated" ? checkpointSubject(ID) : t.startsWith("Pod") ? podSubject(ID) : containerSubject(ID);
const reason = (r: StoredEvent | RejectedEvent) => (isRejected(r) ? r.reason : null);

describe("admit: a message read back from the stream", () => {
  it.each(Object.keys(PAYLOADS) as EventType[])("given a valid %s, then it is admitted with its seq and subject", (type) => {
    const r = admit(subjectOf(type), 7, enc(env(type, VALID[type], { prevHash: "0".repeat(64) })));
    expect(reason(r)).toBeNull();
    expect(r).toMatchObject({ type, seq: 7, subject: subjectOf(type) });
  });

  it("given an event from before the hash chain (no prevHash), then it is admitted", () => {
    expect(reason(admit(containerSubject(ID), 1, enc(env("ContainerPaused", {}))))).toBeNull();
  });

  it.each([
    ["the issue's forged exit, as it was published", containerSubject(ID), { type: "ContainerExited", data: { exitCode: "abc" } }, /unknown version undefined of ContainerExited/],
    ["exitCode 'abc' in a full envelope", containerSubject(ID), env("ContainerExited", { exitCode: "abc", oomKilled: false, exitedAt: AT }), /data.exitCode must be integer/],
    ["an unknown type", containerSubject(ID), env("ContainerTeleported", {}), /unknown event type 'ContainerTeleported'/],
    ["no type", containerSubject(ID), { ...env("x", {}), type: 5 }, /no type/],
    ["a version this code does not read", containerSubject(ID), env("ContainerPaused", {}, { v: 2 }), /unknown version 2 of ContainerPaused/],
    ["an unknown payload field", containerSubject(ID), env("ContainerPaused", { evil: 1 }), /unknown field 'data.evil'/],
    ["an unknown envelope field", containerSubject(ID), env("ContainerPaused", {}, { sudo: true }), /unknown field 'sudo'/],
    ["no eventId", containerSubject(ID), { ...env("ContainerPaused", {}), eventId: undefined }, /missing field 'eventId'/],
    ["`at` that is not a time", containerSubject(ID), env("ContainerPaused", {}, { at: "yesterday" }), /at must match/],
    ["`at` on the 45th of a month", containerSubject(ID), env("ContainerPaused", {}, { at: "2026-01-45T00:00:00Z" }), /not a valid time/],
    ["a causationId that is a number", containerSubject(ID), env("ContainerPaused", {}, { causationId: 5 }), /causationId/],
    ["a malformed prevHash", containerSubject(ID), env("ContainerPaused", {}, { prevHash: "xyz" }), /prevHash must NOT have fewer than 64 characters/],
    ["a ContainerCreated of another id than its subject's", containerSubject("f".repeat(64)), env("ContainerCreated", VALID.ContainerCreated), /ContainerCreated of c0ffee0+ on the subject of f+/],
    ["a container event on a subject that is no container id", "berth.ev.container.web", env("ContainerRemoved", {}), /does not name a container id/],
    ["a container event on an image's subject", imageSubject(DIGEST), env("ContainerRemoved", {}), /not a container's/],
    ["an image event of another digest than its subject's", imageSubject("sha256:" + "cd".repeat(32)), env("ImageRemoved", VALID.ImageRemoved), /ImageRemoved of sha256:abab/],
    ["a node event of another node than its subject's", nodeSubject("n2"), env("NodeStarted", VALID.NodeStarted), /node n1 on subject berth.ev.node.n2/],
    ["a subject of an unknown kind", "berth.ev.pod.p1", env("ContainerRemoved", {}), /not a container's/],
    ["a name's claim on the subject of another name", nameSubject(nameKey("container", "db")), env("NameClaimed", VALID.NameClaimed), /NameClaimed of 'web' on subject/],
    ["a pod checkpoint's record on the pod's subject", podSubject(ID), env("PodCheckpointCreated", VALID.PodCheckpointCreated), /not a checkpoint's/],
    ["a pod checkpoint's record with no member", checkpointSubject(ID), env("PodCheckpointCreated", { ...(VALID.PodCheckpointCreated as object), members: [] }), /members/],
    ["JSON that is not an object", containerSubject(ID), [1, 2], /not a JSON object/],
  ])("given %s, then it is rejected", (_what, subject, msg, why) => {
    const r = admit(subject, 3, enc(msg));
    expect(isRejected(r)).toBe(true);
    expect(reason(r)).toMatch(why);
    expect(r.seq).toBe(3);
  });

  it("given bytes that are not JSON, then it is rejected without a type", () => {
    expect(admit(containerSubject(ID), 1, enc("{nope"))).toEqual({ seq: 1, subject: containerSubject(ID), type: null, reason: "not JSON" });
  });
});

describe("the read model's quarantine", () => {
  const ev = (seq: number, type: EventType, data = VALID[type]) => admit(containerSubject(ID), seq, enc(env(type, data)));
  const running = () => {
    const m = new ReadModel();
    for (const [i, t] of (["ContainerCreated", "ContainerStartRequested", "ContainerStarted"] as const).entries()) m.apply(ev(i + 1, t));
    return m;
  };

  it("given a running container and a forged ContainerExited with exitCode 'abc', then it stays running and the event is listed", () => {
    const m = running();
    m.apply(admit(containerSubject(ID), 4, enc(env("ContainerExited", { exitCode: "abc", oomKilled: false, exitedAt: AT }))));
    expect(m.byId(ID)).toMatchObject({ state: "running", pid: 4242, exitCode: null, version: 4 });
    expect(m.quarantinedTotal).toBe(1);
    expect(m.quarantined).toEqual([{ seq: 4, subject: containerSubject(ID), type: "ContainerExited", kind: "invalid", reason: "data.exitCode must be integer" }]);
  });

  it("given a running container and a ContainerRemoved without a remove request, then it is a forbidden transition: quarantined, still running", () => {
    const m = running();
    m.apply(ev(4, "ContainerRemoved"));
    expect(m.byId(ID)).toMatchObject({ state: "running", version: 4 });
    expect(m.idOfName("web")).toBe(ID);
    expect(m.anomalies).toBe(1);
    expect(m.quarantined[0]).toMatchObject({ seq: 4, kind: "transition", reason: "ContainerRemoved is not allowed in state running" });
  });

  it("given a second ContainerCreated for a live container, then it is quarantined and the container keeps its name", () => {
    const m = running();
    m.apply(ev(4, "ContainerCreated", { ...(VALID.ContainerCreated as object), name: "evil" }));
    expect(m.byId(ID)).toMatchObject({ name: "web", state: "running" });
    expect(m.idOfName("evil")).toBeUndefined();
    expect(m.quarantined[0].kind).toBe("transition");
  });

  it("given an event for a container that was never created, then it is quarantined and no container appears", () => {
    const m = new ReadModel();
    m.apply(ev(1, "ContainerStarted"));
    expect(m.containers.size).toBe(0);
    expect(m.quarantined[0]).toMatchObject({ seq: 1, reason: "ContainerStarted for a container that does not exist (never created, or removed)" });
  });

  it("given more quarantined events than the list keeps, then the count is exact and the list holds the latest", () => {
    const m = running();
    for (let s = 4; s < 1_010; s++) m.apply(ev(s, "ContainerRemoved"));
    expect(m.quarantinedTotal).toBe(1_006);
    expect(m.quarantined).toHaveLength(1_000);
    expect(m.quarantined[0].seq).toBe(10);
    expect(m.byId(ID)?.state).toBe("running");
  });
});
