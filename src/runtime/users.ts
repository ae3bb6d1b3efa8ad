// `user[:group]` → uid, gid and supplementary groups, the way Docker and runc resolve them:
// numbers are taken as they are, names are looked up in the container's own /etc/passwd and
// /etc/group (its rootfs, not the host's). The parsing is pure; reading the files refuses
// symlinks, so a container cannot point the daemon at a host file.
import { constants } from "node:fs";
import { lstat, open } from "node:fs/promises";
import { join } from "node:path";
import { invalid } from "../shared/errors.js";
import type { ExecUser } from "./runc.js";

const ID_RE = /^\d+$/;
const NAME_RE = /^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,63}\$?$/;
/** passwd and group files bigger than this are not read (a real one is a few KiB). */
const FILE_MAX = 1024 * 1024;

export interface PasswdEntry { name: string; uid: number; gid: number }
export interface GroupEntry { name: string; gid: number; members: string[] }

const toId = (s: string, what: string, user: string): number => {
  const n = Number(s);
  if (s.length > 10 || n > 0xfffffffe) throw invalid(`invalid user '${user}': ${what} out of range`);
  return n;
};

/** Lines of /etc/passwd (`name:x:uid:gid:gecos:home:shell`); malformed lines are skipped, as libc does. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 4 || !f[0] || !/^\d{1,10}$/.test(f[2]) || !/^\d{1,10}$/.test(f[3])) continue;
    out.push({ name: f[0], uid: Number(f[2]), gid: Number(f[3]) });
  }
  return out;
}

/** Lines of /etc/group (`name:x:gid:member,member`). */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split("\n")) {
    const f = line.split(":");
    if (f.length < 3 || !f[0] || !/^\d{1,10}$/.test(f[2])) continue;
    out.push({ name: f[0], gid: Number(f[2]), members: (f[3] ?? "").split(",").map((m) => m.trim()).filter(Boolean) });
  }
  return out;
}

/** Whether `user` needs the container's files to resolve (a name on either side). */
export function needsLookup(user: string): boolean {
  return user.split(":").some((p) => !ID_RE.test(p));
}

/**
 * Resolve `user[:group]`. A numeric uid is taken as is (gid 0 unless given, as `run -u` does);
 * a name takes its uid and primary gid from passwd and its supplementary groups from group;
 * a group name or gid replaces the primary gid. Unknown names are InvalidArgument.
 */
export function resolveUser(user: string, passwd: readonly PasswdEntry[], group: readonly GroupEntry[]): ExecUser {
  const parts = user.split(":");
  if (parts.length > 2 || parts.some((p) => !ID_RE.test(p) && !NAME_RE.test(p))) {
    throw invalid(`invalid user '${user}': expected user[:group], names or numeric ids`);
  }
  const [u, g] = parts;
  let uid: number;
  let gid = 0;
  let additionalGids: number[] = [];
  if (ID_RE.test(u)) {
    uid = toId(u, "uid", user);
  } else {
    const e = passwd.find((p) => p.name === u);
    if (!e) {
      if (u !== "root") throw invalid(`invalid user '${user}': no user '${u}' in the container's /etc/passwd`);
      uid = 0;
    } else {
      uid = e.uid;
      gid = e.gid;
      additionalGids = group.filter((gr) => gr.members.includes(u) && gr.gid !== e.gid).map((gr) => gr.gid);
    }
  }
  if (g !== undefined) {
    if (ID_RE.test(g)) gid = toId(g, "gid", user);
    else {
      const e = group.find((gr) => gr.name === g);
      if (!e) throw invalid(`invalid user '${user}': no group '${g}' in the container's /etc/group`);
      gid = e.gid;
    }
  }
  return { uid, gid, ...(additionalGids.length ? { additionalGids: [...new Set(additionalGids)] } : {}) };
}

/** A file of the rootfs, or "" when it is missing; a symlink on the way is refused. */
async function readRootfsFile(rootfs: string, rel: string): Promise<string> {
  let p = rootfs;
  for (const part of rel.split("/")) {
    p = join(p, part);
    const st = await lstat(p).catch(() => null);
    if (!st) return "";
    if (st.isSymbolicLink()) throw invalid(`cannot resolve user names: /${rel} is a symlink in the container; give a numeric uid[:gid]`);
  }
  const fh = await open(p, constants.O_RDONLY | constants.O_NOFOLLOW).catch(() => null);
  if (!fh) return "";
  try {
    const st = await fh.stat();
    if (!st.isFile()) return "";
    if (st.size > FILE_MAX) throw invalid(`cannot resolve user names: /${rel} is larger than ${FILE_MAX} bytes`);
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

/** Resolve `user` against the container's rootfs; numbers need no file. */
export async function resolveUserIn(rootfs: string, user: string): Promise<ExecUser> {
  if (!needsLookup(user)) return resolveUser(user, [], []);
  const [passwd, group] = await Promise.all([readRootfsFile(rootfs, "etc/passwd"), readRootfsFile(rootfs, "etc/group")]);
  return resolveUser(user, parsePasswd(passwd), parseGroup(group));
}
