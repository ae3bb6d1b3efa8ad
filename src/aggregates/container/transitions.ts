// The container state machine, written down as a table. Each state lists the events it accepts
// and the state each one leads to; any other event is an invalid transition. Writers (deciders
// and the executor) check this before appending, so the log never holds a forbidden transition.
import type { ContainerEvent } from "../../events/types.js";

import { LIFECYCLE_STATES, type LifecycleState } from "../../shared/container-states.js";

export { LIFECYCLE_STATES, type LifecycleState };

/** `removed` is not a state a container is ever shown in: it leaves the read model. */
export type Target = LifecycleState | "removed";
type Row = Partial<Record<ContainerEvent["type"], Target>>;

// Intents keep the state (the outcome moves it); `ContainerActionFailed` answers an intent.
// An upgrade or rollback (a saga on the container's own subject, upgrade.ts) starts from created,
// running or exited; its revision is switched only while no process runs (created, exited).
// A checkpoint starts from running or paused (a pod checkpoint freezes every member first);
// without leaveRunning its process's exit comes before its outcome. A restore (of a checkpoint's process) starts from created or exited.
// A migration starts from running; the dump's exit comes first, then (exited) the dump's record,
// then the target's restore (running, on its node) or the source's own (MigrationFailed, running).
// An exec session starts only in a running container and changes no state; its end is recorded
// whatever the container did meanwhile (the exec ends when the container does), except before
// the container ever ran.
export const TRANSITIONS: Readonly<Record<LifecycleState, Row>> = {
  created: {
    ContainerRestoreRequested: "created",
    ContainerRestored: "running",
    ContainerUpgradeRequested: "created",
    ContainerRollbackRequested: "created",
    ContainerRevisionActivated: "created",
    ContainerUpgradeFailed: "created",
    ContainerUpgraded: "created",
    ContainerUpgradeRolledBack: "created",
    ContainerStartRequested: "created",
    ContainerRestartRequested: "created",
    ContainerStarted: "running",
    ContainerStartFailed: "created",
    ContainerUpdated: "created",
    ContainerActionFailed: "created",
    ContainerRestoreFailed: "created",
    ContainerRemoveRequested: "removing",
  },
  running: {
    ContainerMigrationRequested: "running",
    ContainerCheckpointRequested: "running",
    ContainerCheckpointed: "running",
    ContainerUpgradeRequested: "running",
    ContainerRollbackRequested: "running",
    ContainerUpgradeFailed: "running",
    ContainerUpgraded: "running",
    ContainerUpgradeRolledBack: "running",
    ContainerStopRequested: "running",
    ContainerKillRequested: "running",
    ContainerSignaled: "running",
    ContainerRestartRequested: "running",
    ContainerPauseRequested: "running",
    ContainerUpdated: "running",
    ContainerActionFailed: "running",
    ContainerPaused: "paused",
    ContainerExited: "exited",
    ContainerHealthChanged: "running",
    ContainerExecStarted: "running",
    ContainerExecExited: "running",
    ContainerRestoreFailed: "running",
    ContainerRemoveRequested: "removing",
  },
  paused: {
    ContainerCheckpointRequested: "paused",
    ContainerCheckpointed: "paused",
    ContainerStopRequested: "paused",
    ContainerKillRequested: "paused",
    ContainerSignaled: "paused",
    ContainerRestartRequested: "paused",
    ContainerUnpauseRequested: "paused",
    ContainerUpdated: "paused",
    ContainerActionFailed: "paused",
    ContainerUnpaused: "running",
    ContainerExited: "exited",
    ContainerHealthChanged: "paused",
    ContainerExecExited: "paused",
    ContainerRestoreFailed: "paused",
    ContainerRemoveRequested: "removing",
  },
  restarting: {
    ContainerStartRequested: "restarting",
    ContainerStarted: "running",
    ContainerStartFailed: "exited",
    ContainerRestartCancelled: "exited",
    ContainerUpdated: "restarting",
    ContainerExecExited: "restarting",
    ContainerRestoreFailed: "restarting",
    ContainerActionFailed: "restarting",
    ContainerRemoveRequested: "removing",
  },
  exited: {
    ContainerMigrationDumped: "exited",
    ContainerMigrationRestoreFailed: "exited",
    ContainerMigrated: "running",
    MigrationFailed: "running",
    ContainerCheckpointed: "exited",
    ContainerRestoreRequested: "exited",
    ContainerRestored: "running",
    ContainerUpgradeRequested: "exited",
    ContainerRollbackRequested: "exited",
    ContainerRevisionActivated: "exited",
    ContainerUpgradeFailed: "exited",
    ContainerUpgraded: "exited",
    ContainerUpgradeRolledBack: "exited",
    ContainerStartRequested: "exited",
    ContainerRestartRequested: "exited",
    ContainerStarted: "running",
    ContainerStartFailed: "exited",
    ContainerUpdated: "exited",
    ContainerSignaled: "exited",
    ContainerActionFailed: "exited",
    ContainerRestartScheduled: "restarting",
    ContainerExecExited: "exited",
    ContainerRestoreFailed: "exited",
    ContainerRemoveRequested: "removing",
  },
  removing: {
    ContainerExited: "removing",
    ContainerSignaled: "removing",
    ContainerExecExited: "removing",
    ContainerNetworkDetached: "removing",
    ContainerRemoved: "removed",
    ContainerActionFailed: "dead",
  },
  dead: {
    ContainerRestoreFailed: "dead",
    ContainerExecExited: "dead",
    ContainerRemoveRequested: "removing",
    ContainerRemoved: "removed",
  },
};

/** Where `event` leads from `state`, or null when the table forbids it. */
export function nextState(state: LifecycleState, event: ContainerEvent["type"]): Target | null {
  return TRANSITIONS[state][event] ?? null;
}

export class InvalidTransition extends Error {
  override name = "InvalidTransition";
  constructor(
    readonly from: LifecycleState,
    readonly event: string,
  ) {
    super(`invalid state transition: ${event} is not allowed in state ${from}`);
  }
}
