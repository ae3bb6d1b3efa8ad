// /etc/hosts, /etc/hostname and /etc/resolv.conf of a container (what docker and podman write):
// files in the container's dir, bound into it, so the image's own are left alone.
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import writeFileAtomic from "write-file-atomic";

export interface EtcInput {
  hostname: string;
  /** Its bridge IP, or null (network none: loopback only). */
  ip: string | null;
  /** Other names for the IP (the container's name when it differs from the hostname). */
  aliases?: string[];
}

export function hostsFile(e: EtcInput): string {
  const lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"];
  if (e.ip) lines.push(`${e.ip}\t${[...new Set([e.hostname, ...(e.aliases ?? [])])].join(" ")}`);
  return lines.join("\n") + "\n";
}

/**
 * The host's resolver config without loopback nameservers (unreachable from another netns);
 * docker's fallback when none is left.
 */
export function resolvConf(host: string): string {
  const keep = host.split("\n").filter((l) => {
    if (!l.trim()) return false;
    const m = /^\s*nameserver\s+(\S+)/.exec(l);
    return !m || !(/^127\./.test(m[1]) || m[1] === "::1");
  });
  if (!keep.some((l) => /^\s*nameserver\s/.test(l))) keep.push("nameserver 8.8.8.8", "nameserver 8.8.4.4");
  return keep.join("\n") + "\n";
}

/** Writes the three files into `dir`; returns them by their name under /etc. */
export async function writeEtcFiles(dir: string, e: EtcInput): Promise<Record<"hosts" | "hostname" | "resolv.conf", string>> {
  const files = { hosts: join(dir, "hosts"), hostname: join(dir, "hostname"), "resolv.conf": join(dir, "resolv.conf") };
  const host = await readFile("/etc/resolv.conf", "utf8").catch(() => "");
  await Promise.all([
    writeFileAtomic(files.hosts, hostsFile(e), { fsync: false, mode: 0o644 }),
    writeFileAtomic(files.hostname, `${e.hostname}\n`, { fsync: false, mode: 0o644 }),
    writeFileAtomic(files["resolv.conf"], e.ip ? resolvConf(host) : "", { fsync: false, mode: 0o644 }),
  ]);
  return files;
}
