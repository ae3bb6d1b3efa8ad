// Human output of the CLI: aligned tables and short times. Machines use --json instead.
import type { ContainerView, PodView } from "../contract/views.js";

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join("   ").trimEnd();
  return [line(headers), ...rows.map(line)].join("\n") + "\n";
}

/** `42 seconds ago`, `3 minutes ago`, … as docker ps says it. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "-";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  const unit = (n: number, u: string) => `${n} ${u}${n === 1 ? "" : "s"} ago`;
  if (s < 60) return s < 2 ? "just now" : unit(s, "second");
  if (s < 3600) return unit(Math.floor(s / 60), "minute");
  if (s < 86_400) return unit(Math.floor(s / 3600), "hour");
  if (s < 86_400 * 60) return unit(Math.floor(s / 86_400), "day");
  return new Date(t).toISOString().slice(0, 10);
}

export const shortId = (id: string) => id.slice(0, 12);
const dash = (v: number | null | undefined) => (v === null || v === undefined ? "-" : String(v));

export function containerTable(cs: readonly ContainerView[], now = Date.now()): string {
  return table(
    ["ID", "NAME", "IMAGE", "STATE", "PID", "EXIT", "RESTARTS", "CREATED", "IP", "PORTS"],
    cs.map((c) => [
      shortId(c.id), c.name, c.image, c.state, dash(c.pid), dash(c.exitCode), String(c.restartCount), ago(c.createdAt, now),
      c.ip ?? (c.networkMode === "bridge" || c.networkMode === "pod" ? "-" : c.networkMode), ports(c.ports),
    ]),
  );
}

/** docker's PORTS: `127.0.0.1:8080->80/tcp`. */
export function ports(ps: readonly { hostPort: number; containerPort: number; protocol?: string; hostIp?: string }[]): string {
  return ps.map((p) => `${p.hostIp ?? "0.0.0.0"}:${p.hostPort}->${p.containerPort}/${p.protocol ?? "tcp"}`).join(",") || "-";
}

export function podTable(ps: readonly PodView[], now = Date.now()): string {
  return table(
    ["ID", "NAME", "STATE", "CONTAINERS", "IP", "PORTS", "CREATED"],
    ps.map((p) => [shortId(p.id), p.name, p.state, String(p.containers.length), p.ip ?? "-", ports(p.ports), ago(p.createdAt, now)]),
  );
}

export interface EventRow {
  seq: number;
  at: string;
  type: string;
  subject: string;
  actor?: string;
}

const CONTAINER_SUBJECT = "berth.ev.container.";
// Fixed widths, so that a followed stream lines up with its header without seeing ahead.
const W = [8, 24, 28, 12] as const;

export function eventLine(e: EventRow | null): string {
  const cells = e
    ? [String(e.seq), e.at, e.type, e.subject.startsWith(CONTAINER_SUBJECT) ? shortId(e.subject.slice(CONTAINER_SUBJECT.length)) : "-", e.actor ?? "-"]
    : ["SEQ", "TIME", "TYPE", "CONTAINER", "ACTOR"];
  return cells.map((c, i) => (i < W.length ? c.padEnd(W[i]) : c)).join(" ").trimEnd() + "\n";
}

export function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}
