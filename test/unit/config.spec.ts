import { describe, expect, it } from "vitest";
import { checkNatsSync, checkOptions, DEFAULT_MIGRATION_LISTEN, DEFAULT_NATS_SYNC, defaultOptions, parseSize } from "../../src/config.js";

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

describe("--log-max-size / --log-max-files (the containers' default log cap)", () => {
  const o = { ...defaultOptions({}), dataRoot: "/tmp/x", node: "n1" };

  it("given BERTH_LOG_MAX_SIZE and BERTH_LOG_MAX_FILES, then bytes (docker's units) and a count", () => {
    expect(defaultOptions({ BERTH_LOG_MAX_SIZE: "20m", BERTH_LOG_MAX_FILES: "5" })).toMatchObject({ logMaxSize: 20 * 1024 * 1024, logMaxFiles: 5 });
    expect(parseSize("64k")).toBe(65536);
    expect(parseSize("1.5g")).toBe(1.5 * 1024 ** 3);
    expect(parseSize("64MiB")).toBe(64 * 1024 ** 2);
    expect(parseSize("4096")).toBe(4096);
    expect(defaultOptions({})).toMatchObject({ logMaxSize: undefined, logMaxFiles: undefined });
  });

  it("given a value out of bounds or not a number, then the start is refused naming the flag", () => {
    for (const logMaxSize of [NaN, 100, 2 ** 41, 1.5]) expect(() => checkOptions({ ...o, logMaxSize }), String(logMaxSize)).toThrow(/--log-max-size/);
    for (const logMaxFiles of [NaN, 0, 101, 2.5]) expect(() => checkOptions({ ...o, logMaxFiles }), String(logMaxFiles)).toThrow(/--log-max-files/);
    expect(() => checkOptions({ ...defaultOptions({ BERTH_LOG_MAX_SIZE: "lots" }), dataRoot: "/tmp/x", node: "n1" })).toThrow(/BERTH_LOG_MAX_SIZE/);
    expect(() => checkOptions({ ...o, logMaxSize: 16 * 1024, logMaxFiles: 1 })).not.toThrow();
  });
});

describe("--migration-transfer / --migration-listen (how migration archives go to the target)", () => {
  const o = { ...defaultOptions({}), dataRoot: "/tmp/x", node: "n1" };

  it("given the environment, then the transfer and the address; unset, the daemon's defaults (direct, loopback)", () => {
    expect(defaultOptions({ BERTH_MIGRATION_TRANSFER: "store", BERTH_MIGRATION_LISTEN: "10.0.0.5" })).toMatchObject({ migrationTransfer: "store", migrationListen: "10.0.0.5" });
    expect(defaultOptions({})).toMatchObject({ migrationTransfer: undefined, migrationListen: undefined });
    expect(DEFAULT_MIGRATION_LISTEN).toBe("127.0.0.1");
  });

  it("given a transfer that is neither direct nor store, or an address that is not an IP, then the start is refused naming the flag", () => {
    expect(() => checkOptions({ ...o, migrationTransfer: "carrier-pigeon" as never })).toThrow(/--migration-transfer/);
    for (const migrationListen of ["", "localhost", "10.0.0.300", "0.0.0.0:80", "0.0.0.0", "::"]) expect(() => checkOptions({ ...o, migrationListen }), migrationListen).toThrow(/--migration-listen/);
    expect(() => checkOptions({ ...o, migrationTransfer: "direct", migrationListen: "::1" })).not.toThrow();
  });
});
