// `npm run build` step 2: bundle the CLI (src/cli/main.ts and what it imports, node_modules
// included) into one file, dist/cli/berth.cjs, which bin/berth runs. Why: resolving, reading and
// linking ~100 ES modules one by one was most of `berth ps`'s start-up; one CommonJS file is one
// read and one compile, and its require()s of Node's own modules run only when a verb needs them.
// The NATS client (two thirds of the code) is a second file, dist/cli/berth-nats.cjs, loaded only
// by verbs that send a command: a query never compiles it. The daemon is in neither: the `daemon`
// verb imports dist/daemon-main.js (tsc's output) through a computed URL esbuild leaves alone.
import { readFileSync, writeFileSync } from "node:fs";
import { build } from "esbuild";

const root = new URL("..", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));

/**
 * commander requires node:child_process at load, for executable subcommands berth does not have;
 * loading it (and the dgram, socket and pipe modules it pulls in) costs every run a few ms. Hand
 * commander a stand-in that loads the real module on first use.
 */
const lazyChildProcess = {
  name: "lazy-child-process",
  setup(b) {
    b.onResolve({ filter: /^(node:)?child_process$/ }, (args) =>
      args.importer.includes("/node_modules/commander/") ? { path: "child_process", namespace: "lazy" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "lazy" }, () => ({
      contents: 'let m; module.exports = new Proxy({}, { get: (_, k) => (m ??= require("node:child_process"))[k] });',
      loader: "js",
    }));
  },
};

/** client.ts's `import("./nats.js")` becomes a require of the second bundle. */
const natsApart = {
  name: "nats-apart",
  setup(b) {
    b.onResolve({ filter: /^\.\/nats\.js$/ }, (args) =>
      args.importer.endsWith("/src/cli/client.ts") ? { path: "./berth-nats.cjs", external: true } : undefined,
    );
  },
};

const r = await build({
  absWorkingDir: root.pathname,
  entryPoints: { berth: "src/cli/main.ts", "berth-nats": "src/cli/nats.ts" },
  outdir: "dist/cli",
  outExtension: { ".js": ".cjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  // The sources are ES modules: give them their import.meta.url in CommonJS.
  banner: { js: 'const __berthUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { "import.meta.url": "__berthUrl", BERTH_VERSION: JSON.stringify(pkg.version) },
  plugins: [lazyChildProcess, natsApart],
  minify: process.env.BERTH_BUNDLE_MINIFY === "1",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});
// import() of a CommonJS file goes through the ES module loader, which also scans the whole file
// for its export names: ~70 ms more than require() for the NATS bundle. The source must say
// import() (it is an ES module); in the CommonJS bundle it can be a require.
const main = new URL("dist/cli/berth.cjs", root);
const text = readFileSync(main, "utf8");
const lazy = 'import("./berth-nats.cjs")';
if (text.split(lazy).length !== 2) throw new Error(`bundle-cli: expected one ${lazy} in dist/cli/berth.cjs`);
writeFileSync(main, text.replace(lazy, 'Promise.resolve().then(() => require("./berth-nats.cjs"))'));

if (process.env.BERTH_BUNDLE_VERBOSE) {
  for (const [f, o] of Object.entries(r.metafile.outputs)) console.log(`${f}: ${Math.round(o.bytes / 1024)} KiB`);
}
