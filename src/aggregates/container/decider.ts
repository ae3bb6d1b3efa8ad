// decide(command, state) → events, pure. Each command first checks the state (the guard), then
// says which intent (or fact, for create and update) to append. No side effect happens here:
// the owning node's executor turns intents into outcomes.
import type { Healthcheck, Resources, RestartPolicy } from "../../shared/spec.js";
import type { ContainerEvent, ContainerCreatedData } from "../../events/types.js";
import type { NewEventOf } from "../decider.js";
import { BerthError, ErrorCode, conflict, invalid } from "../../shared/errors.js";
import { patchAnnotations, validateSpecRules } from "../../shared/spec-rules.js";
import type { ContainerState } from "./state.js";
import type { ImageConfig } from "../../shared/host-facts.js";
import { mergeUpgrade, type UpgradeChanges } from "./upgrade.js";
import { nextState } from "./transitions.js";

export type ContainerCommand =
  | { type: "Create"; data: ContainerCreatedData }
  | { type: "Start" }
  | { type: "Stop"; signal: string; timeoutSec: number }
  | { type: "Kill"; signal: string }
  | { type: "Restart"; timeoutSec: number }
  | { type: "Pause" }
  | { type: "Unpause" }
  | { type: "Update"; restartPolicy?: RestartPolicy; resources?: Resources; healthcheck?: Healthcheck | null; annotations?: Record<string, string | null> }
  | { type: "Remove"; force: boolean }
  /**
   * The image configs come from the read model (ImageImported), so that the merge is pure;
   * `oldImage` is null when the image the container runs is no longer known.
   */
  | { type: "Upgrade"; image: { name: string; digest: string; config: ImageConfig }; oldImage: ImageConfig | null; changes: UpgradeChanges; healthGateSec: number }
  | { type: "Rollback" }
  | { type: "Checkpoint"; checkpointId: string; leaveRunning: boolean; tcpEstablished: boolean; fileLocks: boolean; preDump?: boolean; partOf?: string }
  | { type: "Restore"; checkpointId: string }
  | { type: "Migrate"; checkpointId: string; toNode: string; preCopy: boolean };

/** A container event before the store gives it an envelope. */
export type NewEvent = NewEventOf<ContainerEvent>;

const verb: Record<ContainerCommand["type"], string> = {
  Create: "create",
  Start: "start",
  Stop: "stop",
  Kill: "kill",
  Restart: "restart",
  Pause: "pause",
  Unpause: "unpause",
  Update: "update",
  Remove: "remove",
  Upgrade: "upgrade",
  Rollback: "roll back",
  Checkpoint: "checkpoint",
  Restore: "restore",
  Migrate: "migrate",
};

export function decide(cmd: ContainerCommand, s: ContainerState | null): NewEvent[] {
  if (cmd.type === "Create") {
    if (s && !s.removed) throw new BerthError(ErrorCode.AlreadyExists, `container ${cmd.data.id} already exists`);
    // The one place a new spec's rules are checked (the service checks only what needs the host).
    validateSpecRules(cmd.data.spec);
    return [{ type: "ContainerCreated", data: cmd.data }];
  }
  if (!s || s.removed) throw new BerthError(ErrorCode.NotFound, "no such container");
  const busy = () => {
    // A forced remove may overtake anything but another remove.
    if (s.pending && !(cmd.type === "Remove" && cmd.force && s.pending.type !== "ContainerRemoveRequested")) {
      throw conflict(`container ${s.name} is busy: ${describe(s.pending.type)} is in progress`);
    }
  };
  const refuse = (why: string): never => {
    throw conflict(`cannot ${verb[cmd.type]} container ${s.name}: ${why}`);
  };
  // A revision is switched while nothing runs: a paused one would have to be thawed, stopped and
  // frozen again, which is not what a user pausing it asked for.
  const upgradable = () => {
    if (s.state === "paused") refuse("it is paused; unpause it first");
    if (s.state === "restarting") refuse("a restart is scheduled; stop it first");
    if (s.state === "removing" || s.state === "dead") refuse(`it is ${s.state}`);
  };
  const guard = (e: NewEvent): NewEvent[] => {
    if (nextState(s.state, e.type) === null) refuse(`it is ${s.state}`);
    return [e];
  };

  switch (cmd.type) {
    case "Start":
      busy();
      if (s.state === "running" || s.state === "paused") refuse("it is already running");
      if (s.state === "restarting") refuse("a restart is already scheduled");
      return guard({ type: "ContainerStartRequested", data: {} });
    case "Stop":
      busy();
      // Nothing runs while a restart is scheduled: stopping means calling the restart off.
      if (s.state === "restarting") return guard({ type: "ContainerRestartCancelled", data: {} });
      if (s.state !== "running" && s.state !== "paused") refuse(`it is not running (${s.state})`);
      return guard({ type: "ContainerStopRequested", data: { signal: cmd.signal, timeoutSec: cmd.timeoutSec } });
    case "Kill":
      busy();
      if (s.state !== "running" && s.state !== "paused") refuse(`it is not running (${s.state})`);
      return guard({ type: "ContainerKillRequested", data: { signal: cmd.signal } });
    case "Restart":
      busy();
      return guard({ type: "ContainerRestartRequested", data: { timeoutSec: cmd.timeoutSec } });
    case "Pause":
      busy();
      if (s.state === "paused") refuse("it is already paused");
      if (s.state !== "running") refuse(`it is not running (${s.state})`);
      return guard({ type: "ContainerPauseRequested", data: {} });
    case "Unpause":
      busy();
      if (s.state !== "paused") refuse(`it is not paused (${s.state})`);
      return guard({ type: "ContainerUnpauseRequested", data: {} });
    case "Update": {
      const { type: _t, ...patch } = cmd;
      if (patch.restartPolicy === undefined && patch.resources === undefined && patch.healthcheck === undefined && patch.annotations === undefined) {
        throw invalid("update needs at least one of restartPolicy, resources, healthcheck, annotations");
      }
      const { annotations, ...rest } = patch;
      validateSpecRules({ ...s.spec, ...definedOnly(rest), ...(annotations ? { annotations: patchAnnotations(s.spec.annotations, annotations) } : {}) });
      return guard({ type: "ContainerUpdated", data: definedOnly(patch) });
    }
    case "Remove":
      busy();
      if ((s.state === "running" || s.state === "paused") && !cmd.force) {
        refuse(`it is ${s.state}; stop it first or remove with force`);
      }
      if (s.state === "removing") refuse("it is already being removed");
      return guard({ type: "ContainerRemoveRequested", data: { force: cmd.force } });
    case "Upgrade": {
      busy();
      upgradable();
      if (cmd.image.digest === s.imageDigest) throw invalid(`image not changed: container ${s.name} already runs ${cmd.image.name} (${cmd.image.digest})`);
      const spec = mergeUpgrade({ containerId: s.id, spec: s.spec, oldImage: cmd.oldImage, newImage: cmd.image.config, newImageName: cmd.image.name, changes: cmd.changes });
      validateSpecRules(spec);
      const revision = s.lastRevision + 1;
      return guard({
        type: "ContainerUpgradeRequested",
        data: { revision, image: cmd.image.name, imageDigest: cmd.image.digest, spec, healthGateSec: cmd.healthGateSec },
      });
    }
    case "Rollback":
      busy();
      upgradable();
      if (!s.previous) refuse("it has no previous revision (no upgrade since it was created or last rolled back)");
      return guard({ type: "ContainerRollbackRequested", data: { revision: s.previous!.revision } });
    case "Checkpoint": {
      busy();
      // A paused one is dumped as it is (CRIU freezes through the same cgroup), and stays paused with leaveRunning.
      if (s.state !== "running" && s.state !== "paused") refuse(`it is not running (${s.state})`);
      const { type: _t, ...data } = cmd;
      return guard({ type: "ContainerCheckpointRequested", data });
    }
    case "Migrate":
      busy();
      if (cmd.toNode === s.node) refuse(`it is on node ${s.node} already`);
      if (s.spec.pod) refuse("it is a member of a pod: a pod moves with pod migrate, all its members together");
      if (s.state !== "running") refuse(`it is ${s.state}: only a running container migrates (its process, memory and rw layer; start it first)`);
      return guard({ type: "ContainerMigrationRequested", data: { checkpointId: cmd.checkpointId, fromNode: s.node, toNode: cmd.toNode, preCopy: cmd.preCopy } });
    case "Restore":
      busy();
      if (s.state === "running" || s.state === "paused") refuse(`it is ${s.state}; stop it first, or restore the checkpoint under a new name`);
      if (s.state !== "created" && s.state !== "exited") refuse(`it is ${s.state}`);
      return guard({ type: "ContainerRestoreRequested", data: { checkpointId: cmd.checkpointId } });
    default: {
      const _never: never = cmd;
      throw new Error(`unknown command ${JSON.stringify(_never)}`);
    }
  }
}

function definedOnly<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

function describe(type: string): string {
  return type.replace(/^Container/, "").replace(/Requested$/, "").toLowerCase();
}

