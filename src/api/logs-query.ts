// The query values of GET /v1/containers/{ref}/logs (docs/API.md), parsed with docker's meaning
// and a clear InvalidArgument for anything else. Pure: `now` comes in.
import { invalid } from "../shared/errors.js";

/** The largest `tail`: counting is a backward scan of the files, so this bounds its time. */
export const MAX_TAIL = 1_000_000;

const UNIT_US: Record<string, number> = { ns: 0.001, us: 1, "µs": 1, ms: 1000, s: 1e6, m: 60e6, h: 3600e6 };
const DURATION = /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/;
const RFC3339 = /^(\d{4})-(\d\d)-(\d\d)T\d\d:\d\d:\d\d(?:\.(\d{1,9}))?(?:Z|[+-]\d\d:\d\d)$/i;

/** Date.parse rolls 2024-02-30 over to March: a day that does not exist is refused. */
const realDay = (y: string, m: string, d: string) => new Date(Date.UTC(+y, +m - 1, +d)).getUTCDate() === +d && +m >= 1 && +m <= 12;

/** A Go/docker duration (`10m`, `1h30m`, `1.5s`, `250ms`) → µs; NaN when it is not one. */
export function durationMicros(s: string): number {
  if (!DURATION.test(s)) return NaN;
  let us = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) us += Number(m[1]) * UNIT_US[m[2]];
  return us;
}

/**
 * `since` as docker takes it: an RFC 3339 time, a duration before now (`10m`, `1h30m`), or Unix
 * seconds (`1700000000`, `1700000000.5`). → µs since the epoch. A time after `nowUs` is refused:
 * it would select nothing, which is never what was meant.
 */
export function parseSince(s: string, nowUs: number): number {
  const v = s.trim();
  let us = NaN;
  if (DURATION.test(v)) us = nowUs - durationMicros(v);
  else if (/^\d{1,12}(?:\.\d{1,9})?$/.test(v)) us = Math.round(Number(v) * 1e6);
  else {
    const m = RFC3339.exec(v);
    // Date.parse keeps milliseconds; the next three digits of the fraction are added here.
    if (m && realDay(m[1], m[2], m[3])) us = Date.parse(v) * 1000 + Number(((m[4] ?? "") + "000000").slice(3, 6));
  }
  if (!Number.isFinite(us)) {
    throw invalid(`since '${s}' is not a time: use RFC 3339 (2024-05-01T10:00:00Z), a duration (10m, 1h30m) or Unix seconds`);
  }
  if (us > nowUs) throw invalid(`since '${s}' is in the future`);
  return Math.max(0, us);
}

/** `tail`: a line count up to MAX_TAIL, or `all` (undefined: every line). */
export function parseTail(s: string | undefined): number | undefined {
  if (s === undefined || s === "all") return undefined;
  if (!/^\d{1,7}$/.test(s) || Number(s) > MAX_TAIL) {
    throw invalid(`tail '${s}' must be a whole number of lines from 0 to ${MAX_TAIL}, or 'all'`);
  }
  return Number(s);
}
