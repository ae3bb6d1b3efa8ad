// The local checkpoint store: given a dir and copies (or hostile files) in it, when written, read
// or listed, then valid copies round-trip and everything else is refused with a reason, never
// returned half-configured.
import { chmod, mkdir, mkdtemp, open, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { ContainerSpec } from "../../src/shared/spec.js";
import {
  LOCAL_COPY_SCHEMA,
  LocalCheckpoints,
  MAX_COPY_BYTES,
  checkCheckpointAnnotation,
  checkCopy,
  localCopyOf,
  sanitize,
  wantsLocalCheckpoint,
  type LocalCopy,
} from "../../src/runtime/local-checkpoints.js";

const ID = "a".repeat(64);
const OTHER = "b".repeat(64);
const DIGEST = `sha256:${"c".repeat(64)}`;

const spec: ContainerSpec = {
  name: "agent",
  image: "docker.io/library/busybox:1.36",
  cmd: ["sleep", "infinity"],
  env: ["A=1"],
  annotations: { "berth.io/checkpoint": "true" },
  restartPolicy: { name: "always" },
  resources: { memoryBytes: 64 * 1024 * 1024 },
  mounts: [{ type: "volume", source: "data", target: "/data" }],
  network: { mode: "bridge", ports: [{ hostPort: 8080, containerPort: 80 }] },
  node: "node-1",
  autoRemove: false,
};

const copyOf = (id = ID, o: Partial<LocalCopy> = {}): LocalCopy => ({
  ...localCopyOf(
    { id, name: "agent", image: spec.image, imageDigest: DIGEST, spec, ip: "10.88.0.7", revision: 0, version: 42, createdAt: "2025-01-01T00:00:00.000Z" },
    { node: "node-1", pod: null, writtenAt: "2025-01-02T03:04:05.678Z" },
  ),
  ...o,
});

let dir: string;
let base: string;
let lines: Array<Record<string, unknown>>;
let store: LocalCheckpoints;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "berth-local-ckpt-"));
  dir = join(base, "local-checkpoints");
  lines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  store = await LocalCheckpoints.open(dir, { log: pino({ level: "warn" }, sink) });
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const put = (name: string, body: string | Buffer) => writeFile(join(dir, name), body, { mode: 0o600 });
const rejectedFor = async (name: string) => (await store.list()).rejected.find((r) => r.file === name);

describe("sanitize", () => {
  it("given a spec, when sanitized, then what only the log may decide is gone and the rest is kept", () => {
    const s = sanitize(spec);
    expect(s).not.toHaveProperty("node");
    expect(s).not.toHaveProperty("autoRemove");
    const { node: _n, autoRemove: _a, ...kept } = spec;
    expect(s).toEqual(kept);
  });

  it("given a spec, when sanitized, then the copy shares nothing with it (pure)", () => {
    const input = structuredClone(spec);
    const s = sanitize(input);
    s.env!.push("B=2");
    s.mounts![0].readOnly = true;
    expect(input).toEqual(spec);
  });

  it("given a container's state, when copied, then the copy holds image, digest, IP, revision and the log sequence", () => {
    expect(copyOf()).toEqual({
      schema: LOCAL_COPY_SCHEMA,
      id: ID,
      name: "agent",
      node: "node-1",
      spec: sanitize(spec),
      image: spec.image,
      imageDigest: DIGEST,
      revision: 0,
      ip: "10.88.0.7",
      pod: null,
      createdAt: "2025-01-01T00:00:00.000Z",
      retiring: null,
      writtenAt: "2025-01-02T03:04:05.678Z",
      logSeq: 42,
    });
    expect(checkCopy(copyOf())).toBeNull();
  });

  it("given a pod member, when copied, then the copy keeps what its pod's sandbox is made of, without the pod's node", () => {
    const POD = "p".repeat(64);
    const pod = { id: POD, name: "app", spec: { share: ["net", "ipc"], network: { mode: "bridge" as const, ports: [{ hostPort: 8081, containerPort: 80 }] }, node: "node-1" }, ip: "10.88.0.9" };
    const copy = localCopyOf(
      { id: ID, name: "web", image: spec.image, imageDigest: DIGEST, spec: { image: spec.image, cmd: ["sleep", "infinity"], pod: POD }, ip: null, revision: 0, version: 3, createdAt: "2025-01-01T00:00:00.000Z" },
      { node: "node-1", pod, writtenAt: "2025-01-02T03:04:05.678Z" },
    );
    expect(copy.pod).toEqual({ id: POD, name: "app", spec: { share: ["net", "ipc"], network: pod.spec.network }, ip: "10.88.0.9" });
    expect(pod.spec.node).toBe("node-1");
    expect(checkCopy(copy)).toBeNull();
    expect(checkCopy({ ...copy, pod: { ...copy.pod as object, spec: { node: "node-2" } } })).toMatch(/pod.spec holds 'node'/);
    expect(checkCopy({ ...copy, pod: { ...copy.pod as object, id: "q".repeat(64) } })).toMatch(/pod.id is not the pod its spec names/);
    // A copy written before copies kept the pod: a bare id is read (and not started offline).
    expect(checkCopy({ ...copy, pod: POD })).toBeNull();
  });
});

describe("the berth.io/checkpoint annotation", () => {
  it.each([
    [{ "berth.io/checkpoint": "true" }, true],
    [{ "berth.io/checkpoint": "false" }, false],
    [{ "berth.io/checkpoint": "True" }, false],
    [{ "berth.io/checkpoint": "1" }, false],
    [{ "berth.io/checkpoint": "" }, false],
    [{ other: "true" }, false],
    [{}, false],
    [undefined, false],
  ])("given %j, when asked, then wants a local checkpoint: %s", (annotations, want) => {
    expect(wantsLocalCheckpoint(annotations)).toBe(want);
  });

  it.each(["false", "True", "TRUE", "1", "yes", "", " true", "true "])("given the value %j, when a create or update is checked, then InvalidArgument", (v) => {
    expect(() => checkCheckpointAnnotation({ "berth.io/checkpoint": v })).toThrow(expect.objectContaining({ code: "InvalidArgument", message: expect.stringContaining('must be "true"') }));
  });

  it("given the value true or no such annotation, when checked, then fine", () => {
    expect(() => checkCheckpointAnnotation({ "berth.io/checkpoint": "true", x: "y" })).not.toThrow();
    expect(() => checkCheckpointAnnotation({ x: "false" })).not.toThrow();
    expect(() => checkCheckpointAnnotation(undefined)).not.toThrow();
  });
});

describe("LocalCheckpoints", () => {
  it("given a copy, when written and read back, then it round-trips, and list has it", async () => {
    await store.write(copyOf());
    expect(await store.read(ID)).toEqual(copyOf());
    expect(await store.list()).toEqual({ copies: [copyOf()], rejected: [] });
    expect(await store.read(OTHER)).toBeNull();
  });

  it("given two copies, when listed, then both, by id", async () => {
    await store.write(copyOf(OTHER, { name: "b" }));
    await store.write(copyOf(ID));
    expect((await store.list()).copies.map((c) => c.id)).toEqual([ID, OTHER]);
  });

  it("given a dir and files, when written, then the dir is 0700 and each copy 0600", async () => {
    await store.write(copyOf());
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, `${ID}.json`))).mode & 0o777).toBe(0o600);
  });

  it("given an existing dir with a looser mode, when opened, then it is made 0700", async () => {
    const d = join(base, "loose");
    await mkdir(d, { mode: 0o755 });
    await chmod(d, 0o755);
    await LocalCheckpoints.open(d);
    expect((await stat(d)).mode & 0o777).toBe(0o700);
  });

  it("given a copy, when replaced, then a reader of the old one sees it whole, the new one is there, and no temp file is left", async () => {
    await store.write(copyOf(ID, { logSeq: 1 }));
    const old = await open(join(dir, `${ID}.json`), "r");
    try {
      await store.write(copyOf(ID, { logSeq: 2, ip: "10.88.0.9" }));
      expect(JSON.parse(await old.readFile("utf8"))).toEqual(copyOf(ID, { logSeq: 1 }));
    } finally {
      await old.close();
    }
    expect(await store.read(ID)).toEqual(copyOf(ID, { logSeq: 2, ip: "10.88.0.9" }));
    expect(await readdir(dir)).toEqual([`${ID}.json`]);
  });

  it("given many writes of one copy at once, when they settle, then the last one is there and it is whole", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => store.write(copyOf(ID, { logSeq: i }))));
    expect((await store.read(ID))?.logSeq).toBe(19);
    expect(await readdir(dir)).toEqual([`${ID}.json`]);
  });

  it("given a copy, when removed, then it is gone; removing again says false", async () => {
    await store.write(copyOf());
    expect(await store.remove(ID)).toBe(true);
    expect(await store.read(ID)).toBeNull();
    expect(await store.remove(ID)).toBe(false);
  });

  describe("bad files are ignored with a log line, never returned", () => {
    it("given corrupt JSON, when listed or read, then rejected as corrupt and logged", async () => {
      await store.write(copyOf(OTHER));
      await put(`${ID}.json`, '{"schema":1,,"id":"x"}');
      const got = await store.list();
      expect(got.copies.map((c) => c.id)).toEqual([OTHER]);
      expect(got.rejected).toEqual([{ file: `${ID}.json`, id: ID, reason: "corrupt JSON" }]);
      expect(await store.read(ID)).toBeNull();
      expect(lines.filter((l) => l.file === `${ID}.json`)).toHaveLength(2);
      expect(lines[0]).toMatchObject({ level: 40, id: ID, reason: "corrupt JSON", msg: expect.stringContaining("ignored: corrupt JSON") });
    });

    it("given a truncated (partly written) copy, when listed, then rejected as truncated", async () => {
      const whole = JSON.stringify(copyOf());
      for (const cut of [1, 20, Math.floor(whole.length / 2), whole.length - 1]) {
        await put(`${ID}.json`, whole.slice(0, cut));
        expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: "truncated (partly written)" });
      }
      await put(`${ID}.json`, "");
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: "empty (partly written)" });
    });

    it("given a copy of another schema version, when listed, then rejected naming the version", async () => {
      await put(`${ID}.json`, JSON.stringify({ ...copyOf(), schema: 2 }));
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: expect.stringMatching(/schema version 2 is not 1/) });
      await put(`${ID}.json`, JSON.stringify({ ...copyOf(), schema: undefined }));
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: expect.stringMatching(/schema version undefined/) });
    });

    it("given a copy whose id is not its file name's, when listed, then rejected", async () => {
      await put(`${ID}.json`, JSON.stringify(copyOf(OTHER)));
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: `its id '${OTHER}' does not match its file name` });
      expect(await store.read(OTHER)).toBeNull();
    });

    it.each([
      ["a missing field", () => { const { imageDigest: _d, ...c } = copyOf(); return c; }, /imageDigest/],
      ["an unknown field", () => ({ ...copyOf(), extra: 1 }), /must NOT have additional properties 'extra'/],
      ["an unknown spec field", () => ({ ...copyOf(), spec: { ...copyOf().spec, privileged: true } }), /spec must NOT have additional properties 'privileged'/],
      ["a spec with node placement", () => ({ ...copyOf(), spec: { ...copyOf().spec, node: "node-2" } }), /only the log may decide/],
      ["a spec that breaks a spec rule", () => ({ ...copyOf(), spec: { ...copyOf().spec, mounts: [{ type: "bind", source: "/etc/../root", target: "/x" }] } }), /must not contain '\.\.'/],
      ["a hostile id inside", () => ({ ...copyOf(), id: "../../etc/passwd" }), /id must match pattern/],
      ["a bad time", () => ({ ...copyOf(), writtenAt: "2025-13-45T99:99:99Z" }), /not a valid time/],
      ["a bad digest", () => ({ ...copyOf(), imageDigest: "sha256:xyz" }), /imageDigest/],
      ["an array", () => [copyOf()], /not a JSON object/],
    ])("given %s, when listed, then rejected", async (_name, body, reason) => {
      await put(`${ID}.json`, JSON.stringify(body()));
      const got = await store.list();
      expect(got.copies).toEqual([]);
      expect(got.rejected).toEqual([{ file: `${ID}.json`, id: ID, reason: expect.stringMatching(reason) }]);
    });

    it("given an oversized file, when listed, then rejected without being read", async () => {
      await put(`${ID}.json`, Buffer.alloc(MAX_COPY_BYTES + 1, 0x20));
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: expect.stringMatching(/larger than/) });
    });

    it("given files that are no copies (a temp file of a cut write, another name), when listed, then ignored with a reason", async () => {
      await store.write(copyOf());
      await put(`${ID}.json.123456789`, JSON.stringify(copyOf()).slice(0, 30));
      await put("notes.txt", "hello");
      await put("..json", "{}");
      const got = await store.list();
      expect(got.copies).toHaveLength(1);
      expect(got.rejected).toEqual(
        expect.arrayContaining([
          { file: `${ID}.json.123456789`, id: null, reason: "a leftover of a write that was cut short" },
          { file: "notes.txt", id: null, reason: expect.stringMatching(/file name/) },
          { file: "..json", id: null, reason: expect.stringMatching(/file name/) },
        ]),
      );
    });

    it("given a symlink as a copy, when read, then refused; when written, then replaced, its target untouched", async () => {
      const outside = join(base, "outside.json");
      await writeFile(outside, JSON.stringify(copyOf()));
      await symlink(outside, join(dir, `${ID}.json`));
      expect(await rejectedFor(`${ID}.json`)).toMatchObject({ reason: "a symlink" });
      await store.write(copyOf(ID, { logSeq: 7 }));
      expect(JSON.parse(await readFile(outside, "utf8"))).toEqual(copyOf());
      expect((await store.read(ID))?.logSeq).toBe(7);
    });
  });

  describe("bad input is refused before it reaches the disk", () => {
    it.each(["../evil", "a/b", "", ".", "x".repeat(65), "a.json"])("given the id %j, when written, read or removed, then InvalidArgument", async (id) => {
      const err = { code: "InvalidArgument" };
      await expect(store.write(copyOf(id))).rejects.toMatchObject(err);
      await expect(store.read(id)).rejects.toMatchObject(err);
      await expect(store.remove(id)).rejects.toMatchObject(err);
      expect(await readdir(dir)).toEqual([]);
      expect(await readdir(base)).toEqual(["local-checkpoints"]);
    });

    it("given a copy that would not be read back, when written, then InvalidArgument and nothing written", async () => {
      await expect(store.write({ ...copyOf(), spec: { ...copyOf().spec, node: "x" } })).rejects.toMatchObject({ code: "InvalidArgument", message: expect.stringMatching(/only the log may decide/) });
      await expect(store.write({ ...copyOf(), ip: "not an ip" })).rejects.toMatchObject({ code: "InvalidArgument" });
      expect(await readdir(dir)).toEqual([]);
    });

    it("given an oversized copy, when written, then InvalidArgument", async () => {
      const env = Array.from({ length: 4096 }, (_, i) => `V${i}=${"x".repeat(1100)}`);
      await expect(store.write(copyOf(ID, { spec: { ...copyOf().spec, env } }))).rejects.toMatchObject({ code: "InvalidArgument", message: expect.stringMatching(/larger than/) });
      expect(await readdir(dir)).toEqual([]);
    });
  });
});
