// A container's own terminal, from the command line to the host tools' arguments: `-it` in the
// spec, `process.terminal` and TERM in config.json, conmon's -t/-i, and the rule on stdin.
import { describe, expect, it } from "vitest";
import { parseRunArgs } from "../../src/cli/args.js";
import { buildOciSpec } from "../../src/runtime/oci-spec.js";
import { conmonArgs, type ConmonOptions } from "../../src/runtime/conmon.js";
import { validateSpecRules } from "../../src/shared/spec-rules.js";
import type { ContainerSpec } from "../../src/shared/spec.js";
import { logger } from "../../src/log.js";

const oci = (spec: Partial<ContainerSpec>) =>
  buildOciSpec({
    name: "web",
    spec: { image: "busybox:latest", ...spec },
    image: { entrypoint: null, cmd: ["sh"], env: [], workdir: "/", user: "", stopSignal: null, labels: {} },
    rootfs: "/r",
    volumesDir: "/v",
    cgroupsPath: "/berth/n1/x",
  });

const conmon = (o: Partial<ConmonOptions>) =>
  conmonArgs({
    runcPath: "/usr/sbin/runc", runtimeArgs: [], id: "x", name: "web", bundle: "/b", pidFile: "/b/p", conmonPidFile: "/b/c",
    exitDir: "/e", socketDir: "/s", logPath: "/b/l", persistDir: "/b", runcLog: "/b/r", timeoutMs: 1000, log: logger("t"), ...o,
  });

describe("a container's terminal", () => {
  it("given -it (or -t -i), when parsed, then the spec asks for a terminal with input", () => {
    expect(parseRunArgs(["-it", "--rm", "busybox", "sh"])).toEqual({ image: "busybox", cmd: ["sh"], autoRemove: true, tty: true, stdin: true });
    expect(parseRunArgs(["-t", "busybox"])).toEqual({ image: "busybox", tty: true });
    // After the image, -it is the container's command's.
    expect(parseRunArgs(["busybox", "ls", "-it"])).toEqual({ image: "busybox", cmd: ["ls", "-it"] });
  });

  it("given tty, when built, then config.json has a terminal and TERM; without it, neither", () => {
    const t = oci({ tty: true });
    expect(t.process.terminal).toBe(true);
    expect(t.process.env).toContain("TERM=xterm");
    expect(oci({ tty: true, env: ["TERM=vt100"] }).process.env.filter((e) => e.startsWith("TERM="))).toEqual(["TERM=vt100"]);
    const plain = oci({});
    expect(plain.process.terminal).toBe(false);
    expect(plain.process.env.some((e) => e.startsWith("TERM="))).toBe(false);
  });

  it("given a terminal, when conmon's arguments are made, then -t, and with stdin -i that outlives a client", () => {
    expect(conmon({})).not.toContain("-t");
    expect(conmon({ terminal: true })).toContain("-t");
    expect(conmon({ terminal: true })).not.toContain("-i");
    const i = conmon({ terminal: true, stdin: true });
    expect(i).toEqual(expect.arrayContaining(["-t", "-i", "--leave-stdin-open"]));
    // conmon's own options come before the runtime's.
    expect(i.indexOf("-i")).toBeLessThan(i.indexOf("--runtime-arg"));
  });

  it("given stdin without tty, when validated, then InvalidArgument; with tty, accepted", () => {
    expect(() => validateSpecRules({ image: "b", stdin: true })).toThrow(/stdin without tty/);
    expect(() => validateSpecRules({ image: "b", stdin: true, tty: true })).not.toThrow();
  });
});
