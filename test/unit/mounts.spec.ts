// validateMountSources: given mounts and a data root on disk, when validated, then bad input is
// InvalidArgument and never reaches the host.
import { mkdir, mkdtemp, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Mount } from "../../src/shared/spec.js";
import { validateMountSources } from "../../src/runtime/mounts.js";
import { checkMounts } from "../../src/shared/spec-rules.js";

let base: string;
let dataRoot: string;
let outside: string;

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "berth-mounts-"));
  dataRoot = join(base, "data");
  outside = join(base, "outside");
  await mkdir(join(dataRoot, "volumes", "v1"), { recursive: true });
  await mkdir(outside, { recursive: true });
  // A path outside the data root that leads into it.
  await symlink(join(dataRoot, "volumes"), join(base, "sneaky"));
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

const rejects = async (mounts: Mount[], re: RegExp) => {
  // As a create checks them: the spec's shape rules, then the host.
  const check = async () => {
    checkMounts(mounts);
    await validateMountSources(mounts, dataRoot);
  };
  await expect(check()).rejects.toMatchObject({ code: "InvalidArgument", message: expect.stringMatching(re) });
};

describe("checkMounts + validateMountSources", () => {
  it("given no mounts, when validated, then fine", async () => {
    await expect(validateMountSources(undefined, dataRoot)).resolves.toBeUndefined();
    await expect(validateMountSources([], dataRoot)).resolves.toBeUndefined();
  });

  it("given a bind of an existing dir outside the data root, a volume and a tmpfs, when validated, then fine", async () => {
    await expect(
      validateMountSources(
        [
          { type: "bind", source: outside, target: "/in", readOnly: true },
          { type: "volume", source: "v1", target: "/data" },
          { type: "tmpfs", target: "/tmp" },
        ],
        dataRoot,
      ),
    ).resolves.toBeUndefined();
  });

  it("given a bind source that does not exist, when validated, then InvalidArgument", async () => {
    await rejects([{ type: "bind", source: join(base, "nope"), target: "/x" }], /does not exist/);
  });

  it("given a bind source inside the data root, when validated, then InvalidArgument", async () => {
    await rejects([{ type: "bind", source: join(dataRoot, "volumes"), target: "/x" }], /inside the data root/);
    await rejects([{ type: "bind", source: dataRoot, target: "/x" }], /inside the data root/);
  });

  it("given a symlink outside that resolves into the data root, when validated, then InvalidArgument", async () => {
    await rejects([{ type: "bind", source: join(base, "sneaky"), target: "/x" }], /inside the data root/);
  });

  it("given a relative or dot-dot bind source, when validated, then InvalidArgument", async () => {
    await rejects([{ type: "bind", source: "outside", target: "/x" }], /absolute source/);
    await rejects([{ type: "bind", source: `${dataRoot}/../outside`, target: "/x" }], /'\.\.'/);
  });

  it("given bad volume names, when validated, then InvalidArgument", async () => {
    for (const source of ["..", "../x", "a/b", ".hidden", "a..b", "x".repeat(129), ""]) {
      await rejects([{ type: "volume", source, target: "/x" }], /volume/);
    }
  });

  it("given bad targets, when validated, then InvalidArgument", async () => {
    await rejects([{ type: "tmpfs", target: "relative" }], /absolute/);
    await rejects([{ type: "tmpfs", target: "/a/../../etc" }], /'\.\.'/);
    await rejects([{ type: "tmpfs", target: "/a" }, { type: "volume", source: "v1", target: "/a" }], /two mounts/);
  });

  it("given a data root that does not exist yet, when validated, then the check still holds", async () => {
    await expect(
      validateMountSources([{ type: "bind", source: outside, target: "/x" }], join(base, "fresh-root")),
    ).resolves.toBeUndefined();
  });
});
