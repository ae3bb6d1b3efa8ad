// The layer rules of docs/ARCHITECTURE.md ("Layers"), checked in CI (`npm run lint:deps`, run by
// deploy/test.sh). Each rule names a layer and what it may not import; `log.ts` and `fault.ts`
// (logging and crash-test fault points) are infrastructure every layer may use.
const layer = (name) => `^src/${name}/`;
const infra = "^src/(log|fault)\\.ts$";
const outside = (...allowed) => ({ pathNot: [...allowed.map(layer), infra, "^node_modules/", "^node:"] });

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "shared-is-a-leaf",
      comment: "Shared value types (spec, errors, host facts) import no other layer.",
      severity: "error",
      from: { path: layer("shared") },
      to: { path: "^src/", ...outside("shared") },
    },
    {
      name: "contract-imports-shared-only",
      comment: "The public contract (views, client.json, subjects, reply) is what clients may read: shared types only.",
      severity: "error",
      from: { path: layer("contract") },
      to: { path: "^src/", ...outside("contract", "shared") },
    },
    {
      name: "events-import-shared-only",
      comment: "Event types, codec and store know nothing of projections, handlers or the host.",
      severity: "error",
      from: { path: layer("events") },
      to: { path: "^src/", ...outside("events", "shared") },
    },
    {
      name: "aggregates-are-pure",
      comment: "Deciders, evolve and transition tables: events and shared types only.",
      severity: "error",
      from: { path: layer("aggregates") },
      to: { path: "^src/", ...outside("aggregates", "events", "shared") },
    },
    {
      name: "runtime-imports-no-domain",
      comment: "The runtime adapters report facts; they import no events, projections, handlers or aggregates.",
      severity: "error",
      from: { path: layer("runtime") },
      to: { path: "^src/", ...outside("runtime", "shared") },
    },
    {
      name: "projections-stay-off-the-host",
      comment: "Read models fold the log; they never reach handlers, the runtime or the doors.",
      severity: "error",
      from: { path: layer("projections") },
      to: { path: "^src/", ...outside("projections", "aggregates", "events", "shared", "contract") },
    },
    {
      name: "handlers-use-ports",
      comment: "Handlers reach the host only through src/handlers/ports.ts, implemented in src/wiring.",
      severity: "error",
      from: { path: layer("handlers") },
      to: { path: "^src/", ...outside("handlers", "projections", "aggregates", "events", "shared", "contract") },
    },
    {
      name: "api-never-imports-runtime",
      comment: "The NATS and HTTP doors call handlers and read projections; the host is not theirs.",
      severity: "error",
      from: { path: layer("api") },
      to: { path: "^src/(runtime|wiring|cli)/" },
    },
    {
      name: "cli-is-a-client",
      comment: "The CLI speaks the contract over the wire; it may start the daemon only through its entry point, lazily.",
      severity: "error",
      from: { path: layer("cli") },
      to: { path: "^src/", pathNot: [...outside("cli", "contract", "shared").pathNot, "^src/daemon-main\\.ts$"] },
    },
    {
      name: "no-circular",
      comment: "A cycle between modules hides which one is the lower layer.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js"] },
  },
};
