// Waiting out a JetStream cluster that cannot place a stream yet (src/wiring/placement.ts).
import { describe, expect, it } from "vitest";
import { JetStreamApiError } from "@nats-io/jetstream";
import { TimeoutError } from "@nats-io/transport-node";
import { notPlaceableYet, whenPlaceable } from "../../src/wiring/placement.js";
import { logger } from "../../src/log.js";

const apiError = (err_code: number, description: string) => new JetStreamApiError({ code: 500, err_code, description });

describe("notPlaceableYet", () => {
  it("given the server's placement and availability errors or a request timeout, then yes", () => {
    expect(notPlaceableYet(apiError(10005, "no suitable peers for placement"))).toBe(true);
    expect(notPlaceableYet(apiError(10008, "JetStream system temporarily unavailable"))).toBe(true);
    expect(notPlaceableYet(new TimeoutError())).toBe(true);
  });

  it("given anything else (a bad config, a permission, a bug), then no: the start fails at once", () => {
    expect(notPlaceableYet(apiError(10058, "stream name already in use with a different configuration"))).toBe(false);
    expect(notPlaceableYet(new Error("Permissions Violation for Publish to \"$JS.API.STREAM.CREATE.X\""))).toBe(false);
    expect(notPlaceableYet(new TypeError("x is undefined"))).toBe(false);
  });
});

describe("whenPlaceable", () => {
  const log = logger("test");

  it("given a cluster that cannot place it twice, when made, then the third try's result", async () => {
    let tries = 0;
    const made = await whenPlaceable("s", async () => {
      tries += 1;
      if (tries < 3) throw apiError(10005, "no suitable peers for placement");
      return "stream";
    }, log);
    expect(made).toBe("stream");
    expect(tries).toBe(3);
  });

  it("given another error, when made, then it fails on the first try", async () => {
    let tries = 0;
    await expect(whenPlaceable("s", async () => {
      tries += 1;
      throw apiError(10058, "stream name already in use with a different configuration");
    }, log)).rejects.toThrow(/different configuration/);
    expect(tries).toBe(1);
  });
});
