// Sizes as people write them: bytes, or a number with k, m, g or t (powers of 1024, an optional
// "b"/"ib" after). One parser for the daemon's flags and the CLI's options.

const UNITS = "bkmgt";

/** The size in bytes, or NaN when `s` is not a size (or too large to be exact). */
export function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(s.trim());
  if (!m) return NaN;
  const n = Math.round(Number(m[1]) * 1024 ** UNITS.indexOf(m[2].toLowerCase() || "b"));
  return Number.isSafeInteger(n) ? n : NaN;
}
