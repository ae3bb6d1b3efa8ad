// Ending what a `runc exec` started. runc makes the exec'd process a session leader (setsid in
// its nsexec), so the process and everything it spawned share that session, unless something
// took pains to leave it. Killing runc alone would not do: runc only copies the output and reaps.
import { readdir, readFile, readlink } from "node:fs/promises";

/** A process's stat fields from its state on (comm may hold spaces and parentheses: they start after the last ')'); null when it is gone. */
async function statFields(pid: number): Promise<string[] | null> {
  const text = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
  return text ? text.slice(text.lastIndexOf(")") + 2).split(" ") : null;
}

async function sessionOf(pid: number): Promise<number | null> {
  const f = await statFields(pid);
  // state ppid pgrp session …; a zombie is dead already.
  return !f || f[0] === "Z" ? null : Number(f[3]);
}

/** The process's start (field 22 of its stat, clock ticks since boot): with the pid, who it is. Null when it is gone or a zombie. */
export async function processStart(pid: number): Promise<string | null> {
  const f = await statFields(pid);
  return !f || f[0] === "Z" || f[0] === "X" ? null : (f[19] ?? null);
}

/** The pid namespace a process lives in (`pid:[inode]`), null when it is gone. */
export const pidNs = (pid: number): Promise<string | null> => readlink(`/proc/${pid}/ns/pid`).catch(() => null);

/**
 * SIGKILL `leader` (a pid runc wrote to its --pid-file) and every process of its session, but
 * only processes inside the pid namespace `ns` (the container's): a pid number freed and reused
 * elsewhere is never hit. A session id stays reserved while any member lives, so members found
 * after the leader died are still the command's own.
 */
export async function killSession(leader: number, ns: string): Promise<void> {
  if (!Number.isInteger(leader) || leader <= 1 || leader === process.pid) return;
  // Never the host's own namespace: there a reused pid could be anyone.
  if (ns === (await pidNs(process.pid))) return;
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((p) => /^\d+$/.test(p)).map(Number);
  for (const pid of [leader, ...pids]) {
    if (pid !== leader && (await sessionOf(pid)) !== leader) continue;
    if ((await pidNs(pid)) !== ns) continue;
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* gone meanwhile */
    }
  }
}
