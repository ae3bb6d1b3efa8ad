// `berth checkpoint REF | ls | rm ID…` and `berth restore ID`: which form the words are, the
// checkpoint ids the CLI lets through, and the human output.
import { describe, expect, it, vi } from "vitest";
import { checkpointForm, checkpointRef, checkpointTable, humanSize } from "../../src/cli/checkpoint.js";
import { main } from "../../src/cli/program.js";
import type { CheckpointView } from "../../src/contract/views.js";

const ID = "ab12".repeat(16);

describe("berth checkpoint's forms", () => {
  it("given a container ref, then it is checkpointed, with only the CRIU flags given", () => {
    expect(checkpointForm("web", [], {})).toEqual({ form: "create", ref: "web", body: { id: "web" } });
    expect(checkpointForm("web", [], { leaveRunning: true, tcpEstablished: true, fileLocks: true, json: true })).toEqual({
      form: "create",
      ref: "web",
      body: { id: "web", leaveRunning: true, tcpEstablished: true, fileLocks: true },
    });
    // A container named like a sub-verb goes by its id; anything else is a ref.
    expect(checkpointForm("LS", [], {})).toMatchObject({ form: "create", ref: "LS" });
  });

  it("given ls, then it lists, of one container with --container", () => {
    expect(checkpointForm("ls", [], {})).toEqual({ form: "ls", route: "/v1/checkpoints" });
    expect(checkpointForm("ls", [], { container: "my web" })).toEqual({ form: "ls", route: "/v1/checkpoints?container=my+web" });
  });

  it("given rm and ids, then each is removed, full or a prefix, lower-cased", () => {
    expect(checkpointForm("rm", [ID, "ABCD"], {})).toEqual({ form: "rm", ids: [ID, "abcd"] });
  });

  it("given words that fit no form, then it is a usage error that says why", () => {
    const usage = (first: string, rest: string[], o = {}) => {
      const f = checkpointForm(first, rest, o);
      expect(f.form, `${first} ${rest.join(" ")}`).toBe("usage");
      return (f as { message: string }).message;
    };
    expect(usage("web", ["db"])).toMatch(/one container/);
    expect(usage("web", [], { container: "db" })).toMatch(/--container is for checkpoint ls/);
    expect(usage("ls", ["web"])).toMatch(/no arguments.*--container/);
    expect(usage("ls", [], { leaveRunning: true, fileLocks: true })).toMatch(/--leave-running, --file-locks/);
    expect(usage("rm", [])).toMatch(/needs the ids/);
    expect(usage("rm", [ID], { tcpEstablished: true, container: "web" })).toMatch(/--tcp-established, --container: not for rm/);
    expect(usage("rm", [ID, "abc"])).toMatch(/'abc' is not a checkpoint id/);
    expect(usage("rm", ["web"])).toMatch(/'web' is not a checkpoint id/);
  });

  it("takes 4 to 64 hex digits as a checkpoint id", () => {
    expect(checkpointRef(ID)).toBe(ID);
    expect(checkpointRef(" DEADbeef ")).toBe("deadbeef");
    for (const s of ["abc", "", "ghij", ID + "0", "ab-cd"]) expect(checkpointRef(s), s).toBeUndefined();
  });
});

describe("berth checkpoint's output", () => {
  it("writes sizes as docker does, in powers of 1000", () => {
    expect([0, 512, 999, 1000, 1234, 99_949, 99_960, 999_960, 1_234_567, 123_456_789, 5e12, 5e15].map(humanSize)).toEqual([
      "0B", "512B", "999B", "1.0kB", "1.2kB", "99.9kB", "100kB", "1.0MB", "1.2MB", "123MB", "5.0TB", "5000TB",
    ]);
  });

  it("lists checkpoints with a short id, the container's name, size, frozen time and age", () => {
    const now = Date.parse("2025-01-01T12:00:00Z");
    const cp: CheckpointView = {
      checkpointId: ID, kind: "container", container: "c".repeat(64), containerName: "counter", pod: null, podName: null, partOf: null, node: "n1", image: "busybox:latest",
      imageDigest: "sha256:" + "d".repeat(64), createdAt: "2025-01-01T11:57:00Z", sizeBytes: 1_234_567, digest: "SHA-256=x",
      durationMs: 900, frozenMs: 152, leaveRunning: false, tcpEstablished: false, restores: 0,
    };
    expect(checkpointTable([cp], now).split("\n")).toEqual([
      "CHECKPOINT ID   CONTAINER   POD   NODE   SIZE    FROZEN   CREATED",
      "ab12ab12ab12    counter     -     n1     1.2MB   152ms    3 minutes ago",
      "",
    ]);
    const pod: CheckpointView = {
      ...cp, checkpointId: "cd34".repeat(16), kind: "pod", container: null, containerName: null, pod: "p".repeat(64), podName: "app",
      members: [{ container: "c".repeat(64), name: "counter", checkpointId: ID }], image: null, imageDigest: null, digest: null,
    };
    expect(checkpointTable([pod], now).split("\n")[1]).toBe("cd34cd34cd34    (1 members)   app   n1     1.2MB   152ms    3 minutes ago");
    expect(checkpointTable([], now)).toBe("CHECKPOINT ID   CONTAINER   POD   NODE   SIZE   FROZEN   CREATED\n");
  });
});

describe("berth checkpoint and restore on the command line", () => {
  // The program as main runs it (exit status 0, 1 or 2), its output kept instead of printed.
  const run = async (...args: string[]) => {
    let text = "";
    vi.spyOn(process.stdout, "write").mockImplementation((s) => ((text += String(s)), true));
    vi.spyOn(process.stderr, "write").mockImplementation((s) => ((text += String(s)), true));
    try {
      return { exitCode: await main(["node", "berth", ...args]), text };
    } finally {
      vi.restoreAllMocks();
    }
  };

  it("says all three forms of checkpoint in its help", async () => {
    const { exitCode, text } = await run("checkpoint", "--help");
    expect(exitCode).toBe(0);
    expect(text).toContain("Usage: berth checkpoint [options] REF | ls [--container REF] | rm ID...");
    expect(text).toContain("berth checkpoint [--leave-running] [--tcp-established] [--file-locks] [--export F] REF");
    expect(text).toContain("berth checkpoint --pre-dump REF");
    expect(text).toContain("berth checkpoint ls [--container REF]");
    expect(text).toContain("berth checkpoint rm ID...");
    expect(text).toMatch(/named ls or rm by its id/);
  });

  it("exits 2 on a misuse before it connects to any daemon", async () => {
    for (const args of [["checkpoint"], ["checkpoint", "a", "b"], ["checkpoint", "rm"], ["checkpoint", "rm", "xyz"], ["checkpoint", "ls", "--leave-running"], ["restore"], ["restore", "nope"]]) {
      const r = await run("--data-root", "/nonexistent/berth", ...args);
      expect(r.exitCode, args.join(" ")).toBe(2);
      expect(r.text, args.join(" ")).toMatch(/error/);
    }
  });
});
