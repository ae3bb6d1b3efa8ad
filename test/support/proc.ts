// Small waits and process checks shared by the integration suites.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** A process that exists and is not a zombie (a killed child not yet reaped counts as gone). */
export const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(")") + 2));
  } catch {
    return false;
  }
};

/** Poll `fn` until it returns something truthy, or fail after `ms`. */
export async function until<T>(fn: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A process holding 40 MB of random text in a shell variable (more than a lazy-pages restore's
 * threshold) that writes "<round> <md5 of it>" to /tmp/sum every half second, from a forked
 * subshell: a page lost or zeroed on the way through a checkpoint changes the md5.
 */
export const HEAP_40MB = ["sh", "-c", 's=$(head -c 30000000 /dev/urandom | base64 -w 0); i=0; while true; do i=$((i+1)); echo "$i $(printf %s "$s" | md5sum)" > /tmp/sum.new; mv /tmp/sum.new /tmp/sum; sleep 0.5; done'];

/** The pids of CRIU lazy-pages daemons serving a dump under `dataRoot` (none once their restores are done). */
export function lazyPagesUnder(dataRoot: string): string {
  return execFileSync("sh", ["-c", `pgrep -f '[l]azy-pages --images-dir ${dataRoot}/' || true`], { encoding: "utf8" }).trim();
}
