// A directory as an archive between hosts (ArchiveSource / ArchiveSink, archive-transfer.ts):
// GNU tar packs and unpacks it (refusing absolute and `..` paths), from or into a stream or a
// socket it holds itself, and tree-digest.ts gives the digest of its files on both sides.
import { mkdir, rm } from "node:fs/promises";
import type { ArchiveSink, ArchiveSource } from "../shared/host-facts.js";
import { toolPaths } from "./exec.js";
import { pipeInto, spawnStream, toolOnSocket } from "./streams.js";
import { treeDigest } from "./tree-digest.js";

/** `dir`'s top-level entries `parts`, as a tar archive. */
export function dirSource(dir: string, parts: string[]): ArchiveSource {
  const args = ["--numeric-owner", "-C", dir, "-cf", "-", ...parts];
  return {
    stream: () => spawnStream(toolPaths.tar, args),
    sendTo: (sock, signal) => toolOnSocket(toolPaths.tar, args, sock, "stdout", signal),
    digest: () => treeDigest(dir, parts),
  };
}

/** `dir`, emptied (0700) and filled from a tar archive; `check` then tells whether what came is complete. */
export function dirSink(dir: string, check: () => Promise<void> = async () => undefined): ArchiveSink {
  const args = ["--numeric-owner", "-C", dir, "-xf", "-"];
  const empty = async () => {
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true, mode: 0o700 });
  };
  return {
    fromStream: async (data) => {
      await empty();
      await pipeInto(toolPaths.tar, args, data);
      await check();
    },
    fromSocket: async (sock, signal) => {
      await empty();
      await toolOnSocket(toolPaths.tar, args, sock, "stdin", signal);
      await check();
    },
    digest: () => treeDigest(dir),
  };
}
