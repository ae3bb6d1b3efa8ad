// The CLI builds only the verb its command line names; everything else (help, typos, --version)
// still sees every verb, as commander did before.
import { describe, expect, it } from "vitest";
import { buildProgram, verbOf } from "../../src/cli/program.js";
import { parseRunArgs } from "../../src/cli/args.js";

const argv = (...a: string[]) => ["node", "berth", ...a];
const verbsBuilt = (...a: string[]) => buildProgram({ exitCode: 0 }, argv(...a)).commands.map((c) => c.name());

describe("berth verb selection", () => {
  it("given a verb after the global options, when the program is built, then it has only that verb", () => {
    expect(verbOf(argv("ps", "-a"))).toBe("ps");
    expect(verbOf(argv("--data-root", "/tmp/x", "rm", "-f", "web"))).toBe("rm");
    expect(verbOf(argv("--data-root=/tmp/x", "image", "ls"))).toBe("image");
    expect(verbsBuilt("--data-root", "/tmp/x", "ps")).toEqual(["ps"]);
    expect(verbsBuilt("image", "ls")).toEqual(["image"]);
  });

  it("given help, --version, no verb or a word that is no verb, then every verb is built", () => {
    for (const a of [[], ["--help"], ["-V"], ["help", "ps"], ["pss"], ["--data-root", "ps"], ["--bogus", "ps"], ["constructor"]]) {
      expect(verbOf(argv(...a)), a.join(" ")).toBeUndefined();
    }
    const all = verbsBuilt();
    expect(all).toEqual(["run", "create", "start", "attach", "pause", "unpause", "stop", "restart", "update", "kill", "rm", "ps", "inspect", "exec", "logs", "upgrade", "rollback", "checkpoint", "restore", "migrate", "pod", "events", "replay", "image", "node", "audit", "daemon"]);
    expect(verbsBuilt("frobnicate")).toEqual(all);
  });

  it("given run -d, when parsed, then it is accepted and changes nothing in the spec", () => {
    expect(parseRunArgs(["-d", "--name", "x", "busybox:latest", "sleep", "100"])).toEqual({ name: "x", image: "busybox:latest", cmd: ["sleep", "100"] });
    expect(parseRunArgs(["--detach", "busybox"])).toEqual({ image: "busybox" });
  });
});
