// `npm run build` step 2: bundle the CLI (src/cli/main.ts and what it imports, node_modules
// included) into one file, dist/cli/berth.cjs, which bin/berth runs. Why: resolving, reading and
// linking ~100 ES modules one by one was most of `berth ps`'s start-up; one CommonJS file is one
// read and one compile, and its require()s of Node's own modules run only when a verb needs them.
// The NATS client (two thirds of the code) is a second file, dist/cli/berth-nats.cjs, loaded only
// by verbs that send a command: a query never compiles it. The daemon is in neither: the `daemon`
// verb imports dist/daemon-main.js (tsc's output) through a computed URL esbuild leaves alone.
import { readFileSync, statSync, writeFileSync } from "node:fs";
import Module from "node:module";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import { build } from "esbuild";

const root = new URL("..", import.meta.url);
const pkg = JSON.parse(readFileSync(new URL("package.json", root), "utf8"));

/**
 * Node modules that libraries require at load but berth's CLI rarely or never uses: commander's
 * node:child_process (for executable subcommands, which berth has none of, and which brings
 * dgram, sockets and pipes with it), and the NATS transport's node:dns (only for a host name).
 * The library gets a stand-in that loads the real module on first use. (The transport's node:tls
 * stays: it asks \`socket instanceof TLSSocket\` on every connection.)
 */
const LAZY = [
  { module: "child_process", from: "/node_modules/commander/" },
  { module: "dns", from: "/node_modules/@nats-io/transport-node/" },
];
const lazyBuiltins = {
  name: "lazy-builtins",
  setup(b) {
    b.onResolve({ filter: /^(node:)?(child_process|dns)$/ }, (args) => {
      const name = args.path.replace(/^node:/, "");
      return LAZY.some((l) => l.module === name && args.importer.includes(l.from)) ? { path: name, namespace: "lazy" } : undefined;
    });
    b.onLoad({ filter: /.*/, namespace: "lazy" }, (args) => ({
      // __esModule is asked by TypeScript's interop helpers at load: answering it must not load.
      contents: `let m; module.exports = new Proxy({}, { get: (_, k) => (k === "__esModule" ? undefined : (m ??= require("node:${args.path}"))[k]) });`,
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
  // (First the directive: the sources are ES modules, strict; a banner before esbuild's own
  // "use strict" would make that one a plain string.)
  banner: { js: '"use strict";\nconst __berthUrl = require("node:url").pathToFileURL(__filename).href;' },
  define: { "import.meta.url": "__berthUrl", BERTH_VERSION: JSON.stringify(pkg.version) },
  plugins: [lazyBuiltins, natsApart],
  minify: process.env.BERTH_BUNDLE_MINIFY === "1",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});
// import() of a CommonJS file goes through the ES module loader, which also scans the whole file
// for its export names: ~70 ms more than require() for the NATS bundle. The source must say
// import() (it is an ES module); in the CommonJS bundle it becomes bin/berth's loader (which uses
// the code cache), or require when the bundle runs without bin/berth.
const main = new URL("dist/cli/berth.cjs", root);
const text = readFileSync(main, "utf8");
const lazy = 'import("./berth-nats.cjs")';
if (text.split(lazy).length !== 2) throw new Error(`bundle-cli: expected one ${lazy} in dist/cli/berth.cjs`);
writeFileSync(main, text.replace(lazy, 'Promise.resolve().then(() => (globalThis.__berthLoadBundle ?? require)("./berth-nats.cjs"))'));

// Under bin/berth an import() left in a bundle fails (Node 20 loses it in code from a cache): the
// only one allowed is src/cli/load.ts's fallback.
for (const name of ["berth.cjs", "berth-nats.cjs"]) {
  const n = readFileSync(new URL(`dist/cli/${name}`, root), "utf8").split(/\bimport\(/).length - 1;
  if (n !== (name === "berth.cjs" ? 1 : 0)) throw new Error(`bundle-cli: dist/cli/${name} has ${n} import() calls: import modules outside the bundle through importModule() of src/cli/load.ts`);
}

// V8 code caches for bin/berth: "<size> <mtimeMs> cold\n" of the bundle they belong to, then the
// data (the top level only; bin/berth's first run makes it "warm"). V8 checks its version and
// flags itself (a cache it rejects is only slower), not the source: hence size and mtime.
for (const name of ["berth.cjs", "berth-nats.cjs"]) {
  const file = new URL(`dist/cli/${name}`, root);
  const path = fileURLToPath(file);
  const script = new vm.Script(Module.wrap(readFileSync(file, "utf8")), { filename: path });
  const st = statSync(file);
  writeFileSync(new URL(`${name}.cache`, file), Buffer.concat([Buffer.from(`${st.size} ${st.mtimeMs} cold\n`, "latin1"), script.createCachedData()]));
}

if (process.env.BERTH_BUNDLE_VERBOSE) {
  for (const [f, o] of Object.entries(r.metafile.outputs)) console.log(`${f}: ${Math.round(o.bytes / 1024)} KiB`);
}
