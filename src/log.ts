// One pino root; each module takes a child with its own `mod` so every line says where it came from.
import { pino, type Logger } from "pino";

const root: Logger = pino({
  level: process.env.BERTH_LOG_LEVEL ?? (process.env.VITEST ? "warn" : "info"),
  base: { pid: process.pid },
  timestamp: pino.stdTimeFunctions.isoTime,
});

export type { Logger };
export const logger = (mod: string, bindings: Record<string, unknown> = {}): Logger =>
  root.child({ mod, ...bindings });
