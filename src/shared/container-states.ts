// The states a container is shown in (API.md `Container.state`): a value type every layer may
// name. Which event leads from one to another is the container aggregate's transition table.
export const LIFECYCLE_STATES = [
  "created",
  "running",
  "paused",
  "restarting",
  "exited",
  "removing",
  "dead",
] as const;
export type LifecycleState = (typeof LIFECYCLE_STATES)[number];
