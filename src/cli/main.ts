// The `berth` CLI (API.md "CLI"): commands go to the daemon as NATS requests, queries over HTTP.
// The verbs are in program.ts (its verb table says how to add one). Built twice: by tsc
// (dist/cli/main.js) and bundled by esbuild into the file bin/berth runs (dist/cli/berth.cjs,
// scripts/bundle-cli.mjs), so that a verb starts in little more than Node's own start-up.
import { main } from "./program.js";

process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  // `berth events | head` closes the pipe early: that is not an error.
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});
// Flush, then exit: no idle socket or timer may hold the CLI (or a stopped daemon) open.
void main().then((status) => process.stdout.write("", () => process.exit(status)));
