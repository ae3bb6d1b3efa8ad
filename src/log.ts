// One pino root; each module takes a child with its own `mod` so every line says where it came from.
// JSON lines for machines (a pipe, a file, journald); readable lines when the daemon runs in the
// foreground on a terminal. The CLI does not import this file.
import { createRequire } from "node:module";
import { pino, type DestinationStream, type Logger } from "pino";

export type LogFormat = "json" | "pretty";

/** BERTH_LOG_FORMAT=json|pretty wins; otherwise pretty exactly when stdout is a terminal. */
export function logFormat(env: NodeJS.ProcessEnv = process.env, isTTY = process.stdout.isTTY === true): LogFormat {
  if (env.BERTH_LOG_FORMAT === "json" || env.BERTH_LOG_FORMAT === "pretty") return env.BERTH_LOG_FORMAT;
  return isTTY ? "pretty" : "json";
}

function destination(): DestinationStream | undefined {
  if (logFormat() === "json") return undefined;
  // Loaded only for a terminal. In this thread and synchronous, not as a worker transport: the
  // daemon's last lines before process.exit must not be lost.
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof import("pino-pretty");
  return pretty({
    sync: true,
    colorize: process.stdout.isTTY === true,
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname,mod",
    messageFormat: "{mod}: {msg}",
    singleLine: true,
  });
}

const root: Logger = pino(
  {
    level: process.env.BERTH_LOG_LEVEL ?? (process.env.VITEST ? "warn" : "info"),
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  },
  destination(),
);

export type { Logger };
export const logger = (mod: string, bindings: Record<string, unknown> = {}): Logger =>
  root.child({ mod, ...bindings });
