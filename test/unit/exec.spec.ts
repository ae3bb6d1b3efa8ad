// Exec's pure rules: user names resolved from the container's passwd and group, the reply cut to
// fit NATS's max_payload, the request checks, and where the exec events sit in the table.
import { describe, expect, it } from "vitest";
import { LIFECYCLE_STATES, nextState } from "../../src/aggregates/container/transitions.js";
import { checkRequest, fitOutput } from "../../src/handlers/exec-service.js";
import { needsLookup, parseGroup, parsePasswd, resolveUser } from "../../src/runtime/users.js";
import { BerthError } from "../../src/shared/errors.js";

const PASSWD = parsePasswd(["root:x:0:0:root:/root:/bin/sh", "app:x:1000:1000::/home/app:/bin/sh", "broken:x:abc:1", "", "web:x:33:33::/:/bin/false"].join("\n"));
const GROUP = parseGroup(["root:x:0:", "app:x:1000:", "staff:x:50:app,web", "audio:x:63:app", "weird:x:zz:app"].join("\n"));

const code = (f: () => unknown) => {
  try {
    f();
  } catch (err) {
    return err instanceof BerthError ? `${err.code}: ${err.message}` : String(err);
  }
  return "no error";
};

describe("exec user resolution", () => {
  it.each([
    ["1000", { uid: 1000, gid: 0 }],
    ["1000:2000", { uid: 1000, gid: 2000 }],
    ["0:0", { uid: 0, gid: 0 }],
    ["app", { uid: 1000, gid: 1000, additionalGids: [50, 63] }],
    ["web", { uid: 33, gid: 33, additionalGids: [50] }],
    ["app:staff", { uid: 1000, gid: 50, additionalGids: [50, 63] }],
    ["app:7", { uid: 1000, gid: 7, additionalGids: [50, 63] }],
    ["4242:staff", { uid: 4242, gid: 50 }],
    ["root", { uid: 0, gid: 0 }],
  ])("given the container's files, when the user is %s, then it runs as %j", (user, want) => {
    expect(resolveUser(user, PASSWD, GROUP)).toEqual(want);
  });

  it("given no passwd file, root still resolves and other names do not", () => {
    expect(resolveUser("root", [], [])).toEqual({ uid: 0, gid: 0 });
    expect(code(() => resolveUser("app", [], []))).toMatch(/^InvalidArgument: .*no user 'app'/);
  });

  it.each([
    ["nobody-here", /no user 'nobody-here'/],
    ["app:nogroup", /no group 'nogroup'/],
    ["a:b:c", /expected user\[:group\]/],
    ["", /expected user\[:group\]/],
    ["app;rm", /expected user\[:group\]/],
    ["99999999999", /expected user|out of range/],
    ["4294967295", /out of range/],
  ])("given %s, then InvalidArgument (%s)", (user, re) => {
    expect(code(() => resolveUser(user, PASSWD, GROUP))).toMatch(/^InvalidArgument: /);
    expect(code(() => resolveUser(user, PASSWD, GROUP))).toMatch(re);
  });

  it("skips malformed lines as libc does", () => {
    expect(PASSWD.map((p) => p.name)).toEqual(["root", "app", "web"]);
    expect(GROUP.map((g) => g.name)).toEqual(["root", "app", "staff", "audio"]);
  });

  it("needs the files only for names", () => {
    expect(needsLookup("1000:1000")).toBe(false);
    expect(needsLookup("1000")).toBe(false);
    expect(needsLookup("app")).toBe(true);
    expect(needsLookup("1000:staff")).toBe(true);
  });
});

describe("exec reply size", () => {
  const json = (o: { stdout: string; stderr: string }) => Buffer.byteLength(JSON.stringify(o.stdout)) + Buffer.byteLength(JSON.stringify(o.stderr));

  it("given output that fits, when fitted, then it is unchanged", () => {
    expect(fitOutput("out\n", "err\n", 1000)).toEqual({ stdout: "out\n", stderr: "err\n", cut: false });
  });

  it.each([
    ["ascii stdout", "a".repeat(2_000_000), "small"],
    ["both big", "b".repeat(700_000), "c".repeat(700_000)],
    ["control bytes (6 bytes each in JSON)", "\u0001".repeat(300_000), ""],
    ["multibyte", "é€".repeat(300_000), "ü".repeat(100_000)],
  ])("given %s, when fitted to 1 MiB, then the JSON fits and the longer stream gave", (_what, out, err) => {
    const budget = 1024 * 1024;
    const f = fitOutput(out, err, budget);
    expect(f.cut).toBe(true);
    expect(json(f)).toBeLessThanOrEqual(budget);
    // Not cut far below the budget either: at least 90 % of it is used.
    expect(json(f)).toBeGreaterThan(budget * 0.9);
    expect(out.startsWith(f.stdout) && err.startsWith(f.stderr)).toBe(true);
  });
});

describe("exec request checks", () => {
  it.each([
    [{ id: "c", cmd: [] }, /cmd must name/],
    [{ id: "c", cmd: [""] }, /cmd must name/],
    [{ id: "c", cmd: ["sh", "a\0b"] }, /NUL/],
    [{ id: "c", cmd: ["sh"], env: ["NOEQUALS"] }, /invalid env entry 'NOEQUALS'/],
    [{ id: "c", cmd: ["sh"], env: ["=v"] }, /invalid env entry/],
    [{ id: "c", cmd: ["sh"], env: ["K=a\0b"] }, /invalid env entry/],
    [{ id: "c", cmd: ["sh"], workdir: "tmp" }, /absolute path/],
  ])("given %j, then InvalidArgument", (req, re) => {
    expect(code(() => checkRequest(req))).toMatch(/^InvalidArgument: /);
    expect(code(() => checkRequest(req))).toMatch(re);
  });

  it("accepts a plain request", () => {
    expect(code(() => checkRequest({ id: "c", cmd: ["sh", "-c", "true"], env: ["K=", "A=b=c"], workdir: "/tmp" }))).toBe("no error");
  });
});

describe("exec events in the transition table", () => {
  it("an exec starts only in a running container, and changes no state", () => {
    for (const s of LIFECYCLE_STATES) expect(nextState(s, "ContainerExecStarted")).toBe(s === "running" ? "running" : null);
  });
  it("an exec's end is recorded whatever the container did meanwhile, except before it ever ran", () => {
    for (const s of LIFECYCLE_STATES) expect(nextState(s, "ContainerExecExited")).toBe(s === "created" ? null : s);
  });
});
