// Signal names and numbers as runc takes them: one validator for every place a signal comes in
// (kill, a container's stopSignal).
import { invalid } from "./errors.js";

const SIGNALS = new Set([
  "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
  "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP",
  "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGSYS",
]);

/** `TERM`, `sigterm`, `SIGTERM` or `15` → a signal name or number runc accepts. */
export function normalizeSignal(sig: string | number): string {
  if (typeof sig === "number" || /^\d+$/.test(sig)) {
    const n = Number(sig);
    if (!Number.isInteger(n) || n < 1 || n > 64) throw invalid(`invalid signal '${sig}'`);
    return String(n);
  }
  const up = sig.toUpperCase();
  const name = up.startsWith("SIG") ? up : `SIG${up}`;
  if (!SIGNALS.has(name)) throw invalid(`invalid signal '${sig}'`);
  return name;
}
