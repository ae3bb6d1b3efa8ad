import { describe, expect, it } from "vitest";
import { checkNatsSync, checkOptions, DEFAULT_NATS_SYNC, defaultOptions } from "../../src/config.js";

describe("--nats-sync (the embedded nats-server's sync_interval)", () => {
  it("takes always or a Go duration", () => {
    for (const s of ["always", "2m", "30s", "500ms", "1m30s", "1.5h"]) expect(checkNatsSync(s)).toBe(s);
  });

  it("refuses anything nats-server would not parse, and zero", () => {
    for (const s of ["", "Always", "2", "2 m", "fast", "0s", "-1s", '2m"\njetstream {'])
      expect(() => checkNatsSync(s), s).toThrow(/--nats-sync/);
  });

  it("comes from BERTH_NATS_SYNC, unset by default (the daemon then uses DEFAULT_NATS_SYNC)", () => {
    expect(defaultOptions({ BERTH_NATS_SYNC: "always" }).natsSync).toBe("always");
    expect(defaultOptions({}).natsSync).toBeUndefined();
    expect(checkNatsSync(DEFAULT_NATS_SYNC)).toBe(DEFAULT_NATS_SYNC);
  });

  it("is checked with the other options", () => {
    const o = { ...defaultOptions({}), dataRoot: "/tmp/x", node: "n1" };
    expect(() => checkOptions({ ...o, natsSync: "soon" })).toThrow(/--nats-sync/);
    expect(() => checkOptions({ ...o, natsSync: "always" })).not.toThrow();
  });
});
