import { describe, expect, it } from "vitest";
import { logFormat } from "../../src/log.js";

describe("the daemon's log format", () => {
  it("given a terminal, then readable lines; given a pipe or a file, then JSON", () => {
    expect(logFormat({}, true)).toBe("pretty");
    expect(logFormat({}, false)).toBe("json");
  });

  it("given BERTH_LOG_FORMAT, then it wins either way; an unknown value is ignored", () => {
    expect(logFormat({ BERTH_LOG_FORMAT: "json" }, true)).toBe("json");
    expect(logFormat({ BERTH_LOG_FORMAT: "pretty" }, false)).toBe("pretty");
    expect(logFormat({ BERTH_LOG_FORMAT: "xml" }, false)).toBe("json");
  });
});
