// The digest of a directory's contents: what a checkpoint's source and target compare once the
// archive is unpacked on the target, so that the check covers the files CRIU will read, whichever
// way the bytes came (a socket straight into tar, or NATS frames). One line a member, sorted by
// path — `d path`, `l path -> target`, `f path size sha256` — then the SHA-256 of those lines.
// File contents are hashed by `openssl dgst` (SHA-NI: 256 MB in 0.27 s here, against 0.5 s for a
// Node read stream and 0.7 s for coreutils' sha256sum), in one process for all files.
import { createHash } from "node:crypto";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeFailure } from "../shared/errors.js";
import { run, toolPaths } from "./exec.js";

const HASH_TIMEOUT_MS = 600_000;

/** Members of `dir` under the top-level entries `names` (all of them when omitted), sorted. */
async function members(dir: string, names?: string[]): Promise<{ path: string; kind: "d" | "l" | "f"; size: number }[]> {
  const out: { path: string; kind: "d" | "l" | "f"; size: number }[] = [];
  const walk = async (rel: string): Promise<void> => {
    const st = await lstat(join(dir, rel));
    if (st.isDirectory()) {
      out.push({ path: rel, kind: "d", size: 0 });
      for (const e of (await readdir(join(dir, rel))).sort()) await walk(`${rel}/${e}`);
    } else if (st.isSymbolicLink()) out.push({ path: rel, kind: "l", size: 0 });
    else if (st.isFile()) out.push({ path: rel, kind: "f", size: st.size });
    else throw new RuntimeFailure("digest", [dir], `'${rel}' is neither a file, a directory nor a symlink`, undefined);
  };
  for (const n of [...(names ?? (await readdir(dir)))].sort()) await walk(n);
  return out;
}

/** The digest (base64url SHA-256) of the tree of `dir` under `names` (every entry when omitted). */
export async function treeDigest(dir: string, names?: string[]): Promise<string> {
  const all = await members(dir, names);
  const files = all.filter((m) => m.kind === "f");
  const sums: string[] = [];
  if (files.length) {
    const { stdout } = await run(toolPaths.openssl, ["dgst", "-sha256", "-r", ...files.map((f) => `./${f.path}`)], { timeoutMs: HASH_TIMEOUT_MS, cwd: dir, toolName: "openssl" });
    for (const line of stdout.split("\n")) if (line) sums.push(line.slice(0, 64));
    if (sums.length !== files.length || sums.some((s) => !/^[0-9a-f]{64}$/.test(s))) {
      throw new RuntimeFailure("openssl", ["dgst"], `hashed ${sums.length} of ${files.length} files in ${dir}`, undefined);
    }
  }
  const h = createHash("sha256");
  let i = 0;
  for (const m of all) {
    if (m.kind === "f") h.update(`f ${m.path} ${m.size} ${sums[i++]}\n`);
    else if (m.kind === "l") h.update(`l ${m.path} -> ${await readlink(join(dir, m.path))}\n`);
    else h.update(`d ${m.path}\n`);
  }
  return h.digest("base64url");
}
