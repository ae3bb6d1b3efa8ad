import { describe, expect, it } from "vitest";
import { CommanderError } from "commander";
import { parseBytes, parseRestart, parseRunArgs, parseVolume } from "../../src/cli/args.js";

describe("berth run arguments", () => {
  it("needs only an image", () => {
    expect(parseRunArgs(["busybox"])).toEqual({ image: "busybox" });
  });

  it("passes everything after the image to the container verbatim", () => {
    expect(parseRunArgs(["--name", "web", "busybox", "sh", "-c", "echo hi; sleep 1"])).toEqual({
      name: "web",
      image: "busybox",
      cmd: ["sh", "-c", "echo hi; sleep 1"],
    });
    // Options after the image are the container's, even ones berth also has.
    expect(parseRunArgs(["busybox", "ls", "--name", "-e", "X=1", "--rm"]).cmd).toEqual(["ls", "--name", "-e", "X=1", "--rm"]);
  });

  it("collects env and labels, repeatable", () => {
    const spec = parseRunArgs(["-e", "A=1", "--env", "B=x=y", "-e", "HOSTVAR", "-e", "UNSET", "-l", "app=web", "--label", "tier=front", "--label", "flag", "busybox"], {
      HOSTVAR: "from-host",
    });
    expect(spec.env).toEqual(["A=1", "B=x=y", "HOSTVAR=from-host"]);
    expect(spec.labels).toEqual({ app: "web", tier: "front", flag: "" });
  });

  it("parses restart policies", () => {
    expect(parseRestart("no")).toEqual({ name: "no" });
    expect(parseRestart("always")).toEqual({ name: "always" });
    expect(parseRestart("unless-stopped")).toEqual({ name: "unless-stopped" });
    expect(parseRestart("on-failure")).toEqual({ name: "on-failure" });
    expect(parseRestart("on-failure:3")).toEqual({ name: "on-failure", maxRetries: 3 });
    for (const bad of ["always:3", "sometimes", "on-failure:", "on-failure:-1"]) expect(() => parseRestart(bad), bad).toThrow();
    expect(parseRunArgs(["--restart", "on-failure:3", "busybox"]).restartPolicy).toEqual({ name: "on-failure", maxRetries: 3 });
  });

  it("reads memory sizes with units", () => {
    expect(parseBytes("1048576")).toBe(1048576);
    expect(parseBytes("512k")).toBe(512 * 1024);
    expect(parseBytes("64m")).toBe(64 * 1024 * 1024);
    expect(parseBytes("64M")).toBe(64 * 1024 * 1024);
    expect(parseBytes("64mb")).toBe(64 * 1024 * 1024);
    expect(parseBytes("64MiB")).toBe(64 * 1024 * 1024);
    expect(parseBytes("1g")).toBe(1024 ** 3);
    expect(parseBytes("1.5g")).toBe(1.5 * 1024 ** 3);
    for (const bad of ["", "m", "-1m", "12x", "1e9"]) expect(() => parseBytes(bad), bad).toThrow();
    const spec = parseRunArgs(["-m", "64m", "--cpus", "0.5", "--pids-limit", "100", "busybox"]);
    expect(spec.resources).toEqual({ memoryBytes: 64 * 1024 * 1024, cpus: 0.5, pidsLimit: 100 });
  });

  it("tells volumes from bind mounts", () => {
    expect(parseVolume("data:/data")).toEqual({ type: "volume", source: "data", target: "/data", readOnly: false });
    expect(parseVolume("data:/data:ro")).toEqual({ type: "volume", source: "data", target: "/data", readOnly: true });
    expect(parseVolume("/srv/www:/www:ro")).toEqual({ type: "bind", source: "/srv/www", target: "/www", readOnly: true });
    expect(parseVolume("/srv/www:/www:rw")).toEqual({ type: "bind", source: "/srv/www", target: "/www", readOnly: false });
    expect(parseVolume("/scratch")).toEqual({ type: "volume", target: "/scratch" });
    for (const bad of ["data", "data:rel", "data:/x:rx", ":/x", "a:/b:ro:x"]) expect(() => parseVolume(bad), bad).toThrow();
    const spec = parseRunArgs(["-v", "data:/data", "--volume", "/etc/hosts:/etc/hosts:ro", "--tmpfs", "/run", "busybox"]);
    expect(spec.mounts).toEqual([
      { type: "volume", source: "data", target: "/data", readOnly: false },
      { type: "bind", source: "/etc/hosts", target: "/etc/hosts", readOnly: true },
      { type: "tmpfs", target: "/run" },
    ]);
  });

  it("maps the remaining flags onto the spec", () => {
    const spec = parseRunArgs([
      "--entrypoint", "/bin/sh", "-w", "/tmp", "-u", "1000:1000", "--rm", "--network", "none",
      "--stop-signal", "SIGINT", "--stop-timeout", "3", "--annotation", "owner=ops", "--node", "n2",
      "busybox", "-c", "true",
    ]);
    expect(spec).toEqual({
      image: "busybox",
      entrypoint: ["/bin/sh"],
      cmd: ["-c", "true"],
      workdir: "/tmp",
      user: "1000:1000",
      autoRemove: true,
      network: { mode: "none" },
      stopSignal: "SIGINT",
      stopTimeoutSec: 3,
      annotations: { owner: "ops" },
      node: "n2",
    });
    expect(parseRunArgs(["--entrypoint", "", "busybox"]).entrypoint).toEqual([]);
    expect(parseRunArgs(["--ip", "10.88.0.10", "busybox"]).network).toEqual({ mode: "bridge", ip: "10.88.0.10" });
  });

  it("calls bad usage a usage error", () => {
    const usage = (argv: string[]) => {
      try {
        parseRunArgs(argv);
      } catch (err) {
        return err instanceof CommanderError;
      }
      return false;
    };
    expect(usage([])).toBe(true);
    expect(usage(["--memory", "lots", "busybox"])).toBe(true);
    expect(usage(["--network", "overlay", "busybox"])).toBe(true);
    expect(usage(["--stop-timeout", "-1", "busybox"])).toBe(true);
    expect(usage(["--bogus", "busybox"])).toBe(true);
    expect(usage(["--tmpfs", "/run:size=64m", "busybox"])).toBe(true);
  });
});
