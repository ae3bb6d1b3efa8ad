// mergeUpgrade (aggregates/container/upgrade.ts): the next revision's spec from the container's,
// the old and the new image's config and the request. Each table row is one precedence rule,
// read as given (container spec, old image, new image) when (request) then (spec, and the argv
// the container really runs: resolveArgs of the merged spec over the new image).
import { describe, expect, it } from "vitest";
import { mergeUpgrade, withImageVolumes, type UpgradeChanges } from "../../src/aggregates/container/upgrade.js";
import { mergeEnv, resolveArgs } from "../../src/runtime/oci-spec.js";
import { anonVolumeName, type ContainerSpec, type Mount } from "../../src/shared/spec.js";
import type { ImageConfig } from "../../src/shared/host-facts.js";
import { BerthError } from "../../src/shared/errors.js";

const ID = "c0ffee".padEnd(64, "0");
const anon = (i: number) => anonVolumeName(ID, i);

const image = (over: Partial<ImageConfig> = {}): ImageConfig => ({
  entrypoint: null, cmd: null, env: [], workdir: "", user: "", stopSignal: null, labels: {}, ...over,
});
const OLD = image({ entrypoint: ["/old-ep"], cmd: ["old-cmd"], env: ["PATH=/old", "A=1", "K=old"], labels: { v: "1", vendor: "acme" }, volumes: ["/data"] });
const NEW = image({ entrypoint: ["/new-ep"], cmd: ["new-cmd"], env: ["PATH=/new", "B=2", "K=new"], labels: { v: "2", tier: "web" }, volumes: ["/data"] });
/** An image that gives only a cmd (busybox-like). */
const NEW_NO_EP = image({ cmd: ["/bin/app"] });

/** The spec as create leaves it on OLD: its VOLUME as an anonymous volume, its labels under the container's. */
const base = (over: Partial<ContainerSpec> = {}): ContainerSpec => ({
  image: "app:v1",
  mounts: [{ type: "volume", source: anon(0), target: "/data" }],
  ...over,
});

function given(spec: ContainerSpec, old: ImageConfig | null = OLD, next: ImageConfig = NEW) {
  return {
    when: (changes: UpgradeChanges = {}) => {
      const merged = mergeUpgrade({ containerId: ID, spec, oldImage: old, newImage: next, newImageName: "app:v2", changes });
      return { spec: merged, argv: resolveArgs(merged, next), env: mergeEnv(next.env, merged.env) };
    },
  };
}

type ArgvRow = {
  rule: string;
  spec: Partial<ContainerSpec>;
  old?: ImageConfig | null;
  next?: ImageConfig;
  changes?: UpgradeChanges;
  /** The merged spec's entrypoint and cmd (undefined: not said, the new image's). */
  entrypoint: string[] | undefined;
  cmd: string[] | undefined;
  argv: string[];
};

const argvRows: ArgvRow[] = [
  { rule: "container without entrypoint or cmd takes the new image's both", spec: {}, entrypoint: undefined, cmd: undefined, argv: ["/new-ep", "new-cmd"] },
  { rule: "container's own cmd is kept, under the new image's entrypoint", spec: { cmd: ["serve"] }, entrypoint: undefined, cmd: ["serve"], argv: ["/new-ep", "serve"] },
  { rule: "container cmd equal to the old image's takes the new image's cmd", spec: { cmd: ["old-cmd"] }, entrypoint: undefined, cmd: undefined, argv: ["/new-ep", "new-cmd"] },
  { rule: "container entrypoint equal to the old image's takes the new image's entrypoint (and its cmd)", spec: { entrypoint: ["/old-ep"] }, entrypoint: undefined, cmd: undefined, argv: ["/new-ep", "new-cmd"] },
  { rule: "container entrypoint equal to the old image's, own cmd: new entrypoint, own cmd", spec: { entrypoint: ["/old-ep"], cmd: ["serve"] }, entrypoint: undefined, cmd: ["serve"], argv: ["/new-ep", "serve"] },
  { rule: "container's own entrypoint is kept and the image's cmd does not come with it", spec: { entrypoint: ["/my-ep"] }, entrypoint: ["/my-ep"], cmd: [], argv: ["/my-ep"] },
  { rule: "container's own entrypoint and cmd are both kept", spec: { entrypoint: ["/my-ep"], cmd: ["-v"] }, entrypoint: ["/my-ep"], cmd: ["-v"], argv: ["/my-ep", "-v"] },
  { rule: "request entrypoint wins and drops the image's cmd", spec: {}, changes: { entrypoint: ["/req-ep"] }, entrypoint: ["/req-ep"], cmd: [], argv: ["/req-ep"] },
  { rule: "request entrypoint wins over the container's own entrypoint", spec: { entrypoint: ["/my-ep"] }, changes: { entrypoint: ["/req-ep"] }, entrypoint: ["/req-ep"], cmd: [], argv: ["/req-ep"] },
  { rule: "request entrypoint keeps the container's own cmd", spec: { cmd: ["serve"] }, changes: { entrypoint: ["/req-ep"] }, entrypoint: ["/req-ep"], cmd: ["serve"], argv: ["/req-ep", "serve"] },
  { rule: "request cmd wins, under the new image's entrypoint", spec: { cmd: ["serve"] }, changes: { cmd: ["req"] }, entrypoint: undefined, cmd: ["req"], argv: ["/new-ep", "req"] },
  { rule: "request cmd wins, under the container's own entrypoint", spec: { entrypoint: ["/my-ep"], cmd: ["-v"] }, changes: { cmd: ["req"] }, entrypoint: ["/my-ep"], cmd: ["req"], argv: ["/my-ep", "req"] },
  { rule: "request entrypoint and cmd both win", spec: { entrypoint: ["/my-ep"], cmd: ["-v"] }, changes: { entrypoint: ["/req-ep"], cmd: ["a", "b"] }, entrypoint: ["/req-ep"], cmd: ["a", "b"], argv: ["/req-ep", "a", "b"] },
  { rule: "a null in the request is not given: the container's own stays", spec: { cmd: ["serve"] }, changes: { entrypoint: null, cmd: null }, entrypoint: undefined, cmd: ["serve"], argv: ["/new-ep", "serve"] },
  { rule: "new image without entrypoint: its cmd alone", spec: {}, next: NEW_NO_EP, entrypoint: undefined, cmd: undefined, argv: ["/bin/app"] },
  { rule: "new image without entrypoint, container's own cmd", spec: { cmd: ["/bin/sh", "-c", "x"] }, next: NEW_NO_EP, entrypoint: undefined, cmd: ["/bin/sh", "-c", "x"], argv: ["/bin/sh", "-c", "x"] },
  { rule: "new image without entrypoint, container entrypoint = old image's: dropped for the new image's (none)", spec: { entrypoint: ["/old-ep"] }, next: NEW_NO_EP, entrypoint: undefined, cmd: undefined, argv: ["/bin/app"] },
  { rule: "old image unknown, container without entrypoint or cmd: the new image's", spec: {}, old: null, entrypoint: undefined, cmd: undefined, argv: ["/new-ep", "new-cmd"] },
  { rule: "old image unknown: the container's cmd counts as its own", spec: { cmd: ["old-cmd"] }, old: null, entrypoint: undefined, cmd: ["old-cmd"], argv: ["/new-ep", "old-cmd"] },
  { rule: "old image unknown: the container's entrypoint counts as its own", spec: { entrypoint: ["/old-ep"] }, old: null, entrypoint: ["/old-ep"], cmd: [], argv: ["/old-ep"] },
  { rule: "container's own cmd equal to the new image's is not written down", spec: { cmd: ["new-cmd"] }, entrypoint: undefined, cmd: undefined, argv: ["/new-ep", "new-cmd"] },
  // An own entrypoint stays the container's even when it equals the new image's: the image's cmd does not join it.
  { rule: "container's own entrypoint equal to the NEW image's stays its own: no image cmd", spec: { entrypoint: ["/new-ep"] }, entrypoint: ["/new-ep"], cmd: [], argv: ["/new-ep"] },
  // An explicit empty entrypoint is the user's: the image's was cleared, and stays cleared.
  { rule: "container's explicit empty entrypoint is kept", spec: { entrypoint: [], cmd: ["sh", "-c", "x"] }, entrypoint: [], cmd: ["sh", "-c", "x"], argv: ["sh", "-c", "x"] },
  { rule: "container's own entrypoint with a cmd equal to the old image's cmd (which never ran under it) keeps both", spec: { entrypoint: ["/my-ep"], cmd: ["old-cmd"] }, entrypoint: ["/my-ep"], cmd: ["old-cmd"], argv: ["/my-ep", "old-cmd"] },
  { rule: "a request entrypoint equal to the new image's still drops the image's cmd (Docker's --entrypoint)", spec: {}, changes: { entrypoint: ["/new-ep"] }, entrypoint: ["/new-ep"], cmd: [], argv: ["/new-ep"] },
];

describe("mergeUpgrade: entrypoint and cmd", () => {
  it.each(argvRows)("$rule", ({ spec, old, next, changes, entrypoint, cmd, argv }) => {
    const r = given(base(spec), old === undefined ? OLD : old, next ?? NEW).when(changes);
    expect(r.spec.entrypoint).toEqual(entrypoint);
    expect(r.spec.cmd).toEqual(cmd);
    expect(r.argv).toEqual(argv);
  });

  it("a container that kept its own argv runs the same argv after the upgrade", () => {
    for (const spec of [{ cmd: ["serve"] }, { entrypoint: ["/my-ep"] }, { entrypoint: ["/my-ep"], cmd: ["-v"] }]) {
      const before = resolveArgs(base(spec), OLD);
      const r = given(base(spec), OLD, image({ entrypoint: ["/other"], cmd: ["x"] })).when();
      if (spec.entrypoint) expect(r.argv).toEqual(before);
      else expect(r.argv).toEqual(["/other", ...spec.cmd!]);
    }
  });
});

describe("mergeUpgrade: env (runtime env = the new image's, then the merged spec's)", () => {
  it.each([
    { rule: "no env of its own: the new image's alone", env: undefined, changes: undefined, specEnv: undefined, runtime: ["PATH=/new", "B=2", "K=new"] },
    { rule: "an entry equal to the old image's is the image's: the new image's value (or none) replaces it", env: ["A=1", "K=old"], changes: undefined, specEnv: undefined, runtime: ["PATH=/new", "B=2", "K=new"] },
    { rule: "the container's own entry overrides the new image's", env: ["K=mine", "C=3"], changes: undefined, specEnv: ["K=mine", "C=3"], runtime: ["PATH=/new", "B=2", "K=mine", "C=3"] },
    { rule: "the request's entry overrides the container's own", env: ["K=mine", "C=3"], changes: ["K=req"], specEnv: ["C=3", "K=req"], runtime: ["PATH=/new", "B=2", "K=req", "C=3"] },
    { rule: "the request's entry overrides the new image's", env: ["A=1"], changes: ["PATH=/req", "D=4"], specEnv: ["PATH=/req", "D=4"], runtime: ["PATH=/req", "B=2", "K=new", "D=4"] },
  ])("$rule", ({ env, changes, specEnv, runtime }) => {
    const r = given(base(env ? { env } : {})).when(changes ? { env: changes } : {});
    expect(r.spec.env).toEqual(specEnv);
    expect(r.env).toEqual(runtime);
  });
});

describe("mergeUpgrade: labels", () => {
  // As create leaves them: the old image's labels under the container's own.
  const created = (own: Record<string, string>) => ({ ...OLD.labels, ...own });
  it.each([
    { rule: "the new image's replace the old image's (those the old one had and the new lacks go)", labels: created({}), changes: undefined, out: { v: "2", tier: "web" } },
    { rule: "the container's own ones stay, over the new image's", labels: created({ team: "a", tier: "db" }), changes: undefined, out: { v: "2", tier: "db", team: "a" } },
    { rule: "a value the container changed from the old image's is its own", labels: created({ v: "mine" }), changes: undefined, out: { v: "mine", tier: "web" } },
    { rule: "the request's override both", labels: created({ team: "a" }), changes: { team: "b", v: "9" }, out: { v: "9", tier: "web", team: "b" } },
  ])("$rule", ({ labels, changes, out }) => {
    expect(given(base({ labels })).when(changes ? { labels: changes } : {}).spec.labels).toEqual(out);
  });

  it("no labels anywhere: none said", () => {
    expect(given(base(), image(), image({ cmd: ["x"] })).when().spec).not.toHaveProperty("labels");
  });
});

describe("mergeUpgrade: resources and the rest of the spec", () => {
  const spec = base({
    resources: { memoryBytes: 64 * 1024 * 1024, cpus: 1 },
    workdir: "/srv", user: "1000", stopSignal: "SIGINT", restartPolicy: { name: "always" },
    network: { mode: "bridge", ports: [{ hostPort: 8080, containerPort: 80 }] }, healthcheck: { test: ["CMD", "true"] },
  });

  it("given resources in the request, then they are merged over the container's", () => {
    expect(given(spec).when({ resources: { cpus: 2 } }).spec.resources).toEqual({ memoryBytes: 64 * 1024 * 1024, cpus: 2 });
  });

  it("given no resources in the request, then the container's stay", () => {
    expect(given(spec).when().spec.resources).toEqual({ memoryBytes: 64 * 1024 * 1024, cpus: 1 });
  });

  it("the image becomes the new one; workdir, user, stop signal, restart policy, network and healthcheck stay", () => {
    const r = given(spec).when().spec;
    expect(r).toMatchObject({ image: "app:v2", workdir: "/srv", user: "1000", stopSignal: "SIGINT", restartPolicy: { name: "always" }, network: spec.network, healthcheck: spec.healthcheck });
  });

  it("the input spec is not changed", () => {
    const copy = structuredClone(spec);
    given(spec).when({ entrypoint: ["/x"], env: ["A=2"], labels: { a: "b" }, resources: { cpus: 3 } });
    expect(spec).toEqual(copy);
  });
});

describe("mergeUpgrade: volumes of the new image", () => {
  const withVolumes = (volumes: string[]) => image({ ...NEW, volumes });
  const expectInvalid = (f: () => unknown, msg: RegExp) => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(BerthError);
      expect((err as BerthError).code).toBe("InvalidArgument");
      expect((err as Error).message).toMatch(msg);
      return;
    }
    throw new Error("expected InvalidArgument");
  };

  it("given a volume the container already has (the old image's), then it keeps that mount (and its data)", () => {
    expect(given(base()).when().spec.mounts).toEqual([{ type: "volume", source: anon(0), target: "/data" }]);
  });

  it("given a volume the container lacks, then it becomes an anonymous volume mount named after the container", () => {
    const r = given(base(), OLD, withVolumes(["/data", "/cache", "/var/log/"])).when();
    expect(r.spec.mounts).toEqual([
      { type: "volume", source: anon(0), target: "/data" },
      { type: "volume", source: anon(1), target: "/cache" },
      { type: "volume", source: anon(2), target: "/var/log" },
    ]);
  });

  it("given a name already taken by another anonymous volume, then the next free index", () => {
    const mounts: Mount[] = [{ type: "volume", source: anon(1), target: "/one" }];
    expect(given(base({ mounts }), OLD, withVolumes(["/two"])).when().spec.mounts).toEqual([...mounts, { type: "volume", source: anon(2), target: "/two" }]);
  });

  it("given a named volume at the image volume's target, then that volume stays (nothing added)", () => {
    const mounts: Mount[] = [{ type: "volume", source: "cachevol", target: "/cache/" }];
    expect(given(base({ mounts }), OLD, withVolumes(["/cache"])).when().spec.mounts).toEqual(mounts);
  });

  it.each([
    { kind: "bind", mount: { type: "bind", source: "/srv/cache", target: "/cache" } as Mount },
    { kind: "tmpfs", mount: { type: "tmpfs", target: "/cache/" } as Mount },
  ])("given a $kind mount at the image volume's target, then the upgrade is refused with InvalidArgument", ({ mount }) => {
    expectInvalid(() => given(base({ mounts: [mount] }), OLD, withVolumes(["/cache"])).when(), /declares a volume at \/cache/);
  });

  it("withImageVolumes 'keep' (create's rule): the existing mount wins, nothing added", () => {
    const mounts: Mount[] = [{ type: "bind", source: "/srv/cache", target: "/cache" }];
    expect(withImageVolumes(mounts, ID, ["/cache", "/data"], "app:v2", "keep")).toEqual([...mounts, { type: "volume", source: anon(1), target: "/data" }]);
    expectInvalid(() => withImageVolumes(mounts, ID, ["/cache"], "app:v2", "refuse"), /bind mount of \/srv\/cache/);
  });

  it("an image that declares one path twice gets one mount", () => {
    expect(withImageVolumes([], ID, ["/x", "/x/", "//x"], "app:v2", "refuse")).toEqual([{ type: "volume", source: anon(0), target: "/x" }]);
  });
});
