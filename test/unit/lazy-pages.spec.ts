// A restore through CRIU's lazy pages, from the dump's size to conmon's arguments: which dumps
// go that way (their pages-N.img bytes against the threshold), and what runc restore is told.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { conmonArgs, type ConmonOptions } from "../../src/runtime/conmon.js";
import { dumpedPageBytes } from "../../src/runtime/criu.js";
import { logger } from "../../src/log.js";

const conmon = (o: Partial<ConmonOptions>) =>
  conmonArgs({
    runcPath: "/usr/sbin/runc", runtimeArgs: [], id: "x", name: "web", bundle: "/b", pidFile: "/b/p", conmonPidFile: "/b/c",
    exitDir: "/e", socketDir: "/s", logPath: "/b/l", persistDir: "/b", runcLog: "/b/r", timeoutMs: 1000, log: logger("t"), ...o,
  });

describe("lazy pages", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("given a dump's images, when sized, then only its pages-N.img files count", async () => {
    const dir = mkdtempSync(join(tmpdir(), "berth-lazy-"));
    dirs.push(dir);
    writeFileSync(join(dir, "pages-1.img"), Buffer.alloc(4096));
    writeFileSync(join(dir, "pages-2.img"), Buffer.alloc(8192));
    writeFileSync(join(dir, "pagemap-1.img"), Buffer.alloc(100));
    writeFileSync(join(dir, "core-1.img"), Buffer.alloc(100));
    expect(await dumpedPageBytes(dir)).toBe(12288);
  });

  it("given no images dir, when sized, then 0 (a plain restore, whose own error tells)", async () => {
    expect(await dumpedPageBytes(join(tmpdir(), "berth-lazy-none-here"))).toBe(0);
  });

  it("given a restore with lazy pages, when conmon's arguments are made, then runc restore gets --lazy-pages with its work path; without, not", () => {
    const lazy = conmon({ restore: { imagePath: "/k/images", workPath: "/k/work", lazyPages: true } });
    expect(lazy).toEqual(expect.arrayContaining(["--restore", "/k/images", "--runtime-opt", "--work-path=/k/work"]));
    expect(lazy[lazy.indexOf("--lazy-pages") - 1]).toBe("--runtime-opt");
    expect(conmon({ restore: { imagePath: "/k/images", workPath: "/k/work" } })).not.toContain("--lazy-pages");
  });
});
