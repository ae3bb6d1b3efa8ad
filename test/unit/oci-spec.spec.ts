// buildOciSpec is pure: given an image config and a spec, when built, then config.json says …
import { describe, expect, it } from "vitest";
import { BerthError } from "../../src/shared/errors.js";
import type { ContainerSpec } from "../../src/shared/spec.js";
import { buildOciSpec, CPU_PERIOD, DEFAULT_CAPS, DEFAULT_PATH, parseUser, type OciSpecInput } from "../../src/runtime/oci-spec.js";
import type { ImageConfig } from "../../src/shared/host-facts.js";

const image = (over: Partial<ImageConfig> = {}): ImageConfig => ({
  entrypoint: null, cmd: ["sh"], env: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], workdir: "/", user: "",
  stopSignal: null, labels: {}, ...over,
});

const build = (spec: Partial<ContainerSpec> = {}, img: Partial<ImageConfig> = {}, extra: Partial<OciSpecInput> = {}) =>
  buildOciSpec({
    name: "web", spec: { image: "busybox:latest", ...spec }, image: image(img), rootfs: "/data/containers/x/rootfs",
    volumesDir: "/data/volumes", cgroupsPath: "/berth/n1/x", ...extra,
  });

const invalidError = (fn: () => unknown, re: RegExp) => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe("InvalidArgument");
    expect((err as Error).message).toMatch(re);
    return;
  }
  throw new Error("expected InvalidArgument");
};

describe("entrypoint and cmd precedence (Docker's rules)", () => {
  it.each([
    ["given neither in the spec, then image entrypoint + image cmd", {}, { entrypoint: ["/ep"], cmd: ["a"] }, ["/ep", "a"]],
    ["given only spec cmd, then image entrypoint + spec cmd", { cmd: ["b"] }, { entrypoint: ["/ep"], cmd: ["a"] }, ["/ep", "b"]],
    ["given only spec entrypoint, then image cmd is dropped", { entrypoint: ["/x"] }, { entrypoint: ["/ep"], cmd: ["a"] }, ["/x"]],
    ["given both, then spec entrypoint + spec cmd", { entrypoint: ["/x"], cmd: ["y"] }, { entrypoint: ["/ep"], cmd: ["a"] }, ["/x", "y"]],
    ["given an empty spec entrypoint and a cmd, then the cmd alone", { entrypoint: [], cmd: ["echo", "hi"] }, { entrypoint: ["/ep"], cmd: ["a"] }, ["echo", "hi"]],
    ["given null fields, then they count as not given", { entrypoint: null, cmd: null }, { entrypoint: null, cmd: ["sh"] }, ["sh"]],
    ["given the busybox image and sh -c, then sh -c …", { entrypoint: ["sh", "-c"], cmd: ["echo hi"] }, {}, ["sh", "-c", "echo hi"]],
  ] as const)("%s", (_title, spec, img, args) => {
    expect(build(spec as Partial<ContainerSpec>, img as Partial<ImageConfig>).process.args).toEqual(args);
  });

  it("given an empty spec entrypoint and no cmd, when built, then InvalidArgument", () => {
    invalidError(() => build({ entrypoint: [] }, { entrypoint: ["/ep"], cmd: ["a"] }), /no command/);
  });

  it("given an image with no command and a spec with none, when built, then InvalidArgument", () => {
    invalidError(() => build({}, { cmd: null }), /no command/);
  });
});

describe("env", () => {
  it("given image env and spec env, when built, then the spec overrides by key and keeps image order", () => {
    const env = build({ env: ["B=2", "C=3"] }, { env: ["PATH=/bin", "A=1", "B=1"] }).process.env;
    expect(env.slice(0, 4)).toEqual(["PATH=/bin", "A=1", "B=2", "C=3"]);
  });

  it("given no PATH anywhere, when built, then Docker's default PATH is added", () => {
    expect(build({}, { env: [] }).process.env[0]).toBe(DEFAULT_PATH);
  });

  it("given nothing about HOSTNAME and HOME, when built, then both are set", () => {
    expect(build().process.env).toEqual(expect.arrayContaining(["HOSTNAME=web", "HOME=/root"]));
  });

  it("given a value with '=' inside, when built, then only the first '=' splits", () => {
    expect(build({ env: ["Q=a=b"] }).process.env).toContain("Q=a=b");
  });

  it.each([["NOEQUALS"], ["=v"]])("given env entry %s, when built, then InvalidArgument", (e) => {
    invalidError(() => build({ env: [e] }), /invalid env/);
  });
});

describe("user, workdir, hostname", () => {
  it.each([
    [undefined, { uid: 0, gid: 0 }],
    ["", { uid: 0, gid: 0 }],
    ["1000", { uid: 1000, gid: 0 }],
    ["1000:1001", { uid: 1000, gid: 1001 }],
    ["root", { uid: 0, gid: 0 }],
    ["root:root", { uid: 0, gid: 0 }],
    ["0:100", { uid: 0, gid: 100 }],
  ])("given user %s, when parsed, then %o", (u, want) => {
    expect(parseUser(u)).toEqual(want);
  });

  it.each([["nobody"], ["1000:staff"], ["1:2:3"], ["-1"], ["99999999999"]])("given user %s, when parsed, then InvalidArgument", (u) => {
    invalidError(() => parseUser(u), /invalid user/);
  });

  it("given an image user and no spec user, when built, then the image user applies", () => {
    expect(build({}, { user: "7:8" }).process.user).toEqual({ uid: 7, gid: 8 });
    expect(build({ user: "9" }, { user: "7:8" }).process.user).toEqual({ uid: 9, gid: 0 });
  });

  it("given workdirs, when built, then spec beats image beats /", () => {
    expect(build({ workdir: "/srv" }, { workdir: "/app" }).process.cwd).toBe("/srv");
    expect(build({}, { workdir: "/app" }).process.cwd).toBe("/app");
    expect(build({}, { workdir: "" }).process.cwd).toBe("/");
  });

  it.each([["relative"], ["/a/../b"]])("given workdir %s, when built, then InvalidArgument", (w) => {
    invalidError(() => build({ workdir: w }), /workdir/);
  });

  it("given a long name, when built, then the hostname is cut to 63 characters", () => {
    const name = "n".repeat(128);
    expect(buildOciSpec({ ...{ name, spec: { image: "b" }, image: image(), rootfs: "/r", volumesDir: "/v", cgroupsPath: "/c" } }).hostname).toHaveLength(63);
  });
});

describe("mounts", () => {
  it("given no mounts, when built, then runc's defaults with a read-only /sys", () => {
    const m = build().mounts;
    expect(m.map((x) => x.destination)).toEqual(["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]);
    expect(m.find((x) => x.destination === "/sys")!.options).toContain("ro");
  });

  it("given volume, bind and tmpfs mounts, when built, then bind of the volume dir, rbind, tmpfs; ro honored", () => {
    const m = build({
      mounts: [
        { type: "volume", source: "data", target: "/data" },
        { type: "bind", source: "/srv/conf", target: "/etc/app", readOnly: true },
        { type: "tmpfs", target: "/scratch" },
      ],
    }).mounts;
    expect(m).toContainEqual({ destination: "/data", type: "bind", source: "/data/volumes/data", options: ["rbind", "rprivate"] });
    expect(m).toContainEqual({ destination: "/etc/app", type: "bind", source: "/srv/conf", options: ["rbind", "rprivate", "ro"] });
    expect(m).toContainEqual({ destination: "/scratch", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"] });
  });

  it("given a child mount listed before its parent, when built, then the parent is mounted first", () => {
    const dests = build({ mounts: [{ type: "tmpfs", target: "/a/b" }, { type: "tmpfs", target: "/a" }] }).mounts.map((m) => m.destination);
    expect(dests.indexOf("/a")).toBeLessThan(dests.indexOf("/a/b"));
  });

  it("given a user mount at /dev/shm, when built, then it replaces the default one", () => {
    const shm = build({ mounts: [{ type: "tmpfs", target: "/dev/shm" }] }).mounts.filter((m) => m.destination === "/dev/shm");
    expect(shm).toHaveLength(1);
    expect(shm[0].source).toBe("tmpfs");
  });

  it.each([
    [{ type: "bind", source: "/x", target: "rel" }, /absolute/],
    [{ type: "bind", source: "/x", target: "/a/../etc" }, /'\.\.'/],
    [{ type: "bind", source: "/x", target: "/" }, /not allowed/],
    [{ type: "bind", source: "rel", target: "/a" }, /absolute source/],
    [{ type: "bind", target: "/a" }, /absolute source/],
    [{ type: "volume", target: "/a" }, /needs a source/],
    [{ type: "volume", source: "../etc", target: "/a" }, /invalid volume name/],
    [{ type: "volume", source: "a/b", target: "/a" }, /invalid volume name/],
    [{ type: "volume", source: "a..b", target: "/a" }, /invalid volume name/],
    [{ type: "tmpfs", source: "x", target: "/a" }, /takes no source/],
  ] as const)("given mount %o, when built, then InvalidArgument", (m, re) => {
    invalidError(() => build({ mounts: [m as never] }), re);
  });

  it("given two mounts at one target, when built, then InvalidArgument", () => {
    invalidError(() => build({ mounts: [{ type: "tmpfs", target: "/a" }, { type: "tmpfs", target: "/a/" }] }), /two mounts/);
  });
});

describe("resources and cgroups", () => {
  it("given memory, cpus and pids limits, when built, then linux.resources says so", () => {
    const r = build({ resources: { memoryBytes: 64 * 1024 * 1024, cpus: 1.5, pidsLimit: 100 } }).linux.resources;
    expect(r.memory).toEqual({ limit: 64 * 1024 * 1024 });
    expect(r.cpu).toEqual({ quota: 150_000, period: CPU_PERIOD });
    expect(r.pids).toEqual({ limit: 100 });
  });

  it("given zero limits, when built, then no limits at all", () => {
    const r = build({ resources: { memoryBytes: 0, cpus: 0, pidsLimit: 0 } }).linux.resources;
    expect(r.memory).toBeUndefined();
    expect(r.cpu).toBeUndefined();
    expect(r.pids).toBeUndefined();
    expect(r.devices).toEqual([{ allow: false, access: "rwm" }]);
  });

  it("given a cgroups path, when built, then it is used verbatim", () => {
    expect(build().linux.cgroupsPath).toBe("/berth/n1/x");
  });
});

describe("network modes and security defaults", () => {
  const ns = (s: ReturnType<typeof build>) => s.linux.namespaces.map((n) => n.type);

  it("given mode none (or nothing), when built, then a new empty network namespace", () => {
    expect(ns(build())).toEqual(["pid", "ipc", "uts", "mount", "network"]);
    expect(ns(build({ network: { mode: "none" } }))).toContain("network");
  });

  it("given mode host, when built, then no network namespace, host /sys bound ro, resolv.conf and hosts bound ro", () => {
    const s = build({ network: { mode: "host" } }, {}, { hostNetworkFiles: ["/etc/resolv.conf", "/etc/hosts"] });
    expect(ns(s)).not.toContain("network");
    expect(s.mounts.find((m) => m.destination === "/sys")).toMatchObject({ type: "bind", source: "/sys" });
    expect(s.mounts).toContainEqual({ destination: "/etc/hosts", type: "bind", source: "/etc/hosts", options: ["rbind", "rprivate", "ro"] });
  });

  it("given mode bridge without its pinned netns, when built, then InvalidArgument", () => {
    invalidError(() => build({ network: { mode: "bridge" } }), /joins its pinned network namespace/);
  });

  it("given mode bridge with its pinned netns and etc files, when built, then it joins the netns by path and binds the files", () => {
    const s = build({ network: { mode: "bridge" } }, {}, {
      namespacePaths: { network: "/d/sandboxes/x/net" }, etcFiles: { hosts: "/d/c/hosts", hostname: "/d/c/hostname", "resolv.conf": "/d/c/resolv.conf" },
    });
    expect(s.linux.namespaces).toContainEqual({ type: "network", path: "/d/sandboxes/x/net" });
    expect(s.linux.namespaces).toContainEqual({ type: "uts" });
    expect(s.mounts).toContainEqual({ destination: "/etc/hosts", type: "bind", source: "/d/c/hosts", options: ["rbind", "rprivate"] });
    expect(s.mounts.map((m) => m.destination)).toEqual(expect.arrayContaining(["/etc/hostname", "/etc/resolv.conf"]));
    expect(s.hostname).toBe("web");
  });

  it("given a name that is no DNS label, when built, then the hostname is made one", () => {
    expect(build({}, {}, { name: "my_app.v2" }).hostname).toBe("my-app-v2");
  });

  it("given any spec, when built, then Docker's capabilities, no new privileges, masked paths, no terminal", () => {
    const s = build();
    expect(s.process.capabilities.bounding).toEqual(DEFAULT_CAPS);
    expect(s.process.capabilities.bounding).not.toContain("CAP_SYS_ADMIN");
    expect(s.process.noNewPrivileges).toBe(true);
    expect(s.process.terminal).toBe(false);
    expect(s.linux.maskedPaths).toContain("/proc/kcore");
    expect(s.linux.readonlyPaths).toContain("/proc/sys");
    expect(s.root).toEqual({ path: "/data/containers/x/rootfs", readonly: false });
  });

  it("given annotations, when built, then they are copied", () => {
    expect(build({ annotations: { a: "b" } }).annotations).toEqual({ a: "b" });
  });
});
