// The name aggregate (aggregates/name): a name is claimed by one owner at a time, released by its
// owner only, and a claim whose owner never came to exist is void after STALE_CLAIM_MS.
import { describe, expect, it } from "vitest";
import { STALE_CLAIM_MS, nameDecider, nameKey, type NameState } from "../../src/aggregates/name/index.js";
import { BerthError } from "../../src/shared/errors.js";

const A = "a".repeat(64);
const B = "b".repeat(64);
const T = Date.parse("2026-12-01T00:00:00Z");
const held = (owner: string | null, at = T): NameState => ({ id: nameKey("container", "web"), version: 3, name: "web", kind: "container", owner, claimedAt: owner ? new Date(at).toISOString() : null });
const claim = (owner: string, now = T, exists: (o: string) => boolean = () => true) => ({ type: "Claim" as const, name: "web", kind: "container" as const, owner, now, exists });

describe("the name decider", () => {
  it("given a free name, when claimed, then NameClaimed", () => {
    expect(nameDecider.decide(claim(A), null)).toEqual([{ type: "NameClaimed", data: { name: "web", kind: "container", owner: A } }]);
    expect(nameDecider.decide(claim(A), held(null))).toHaveLength(1);
  });
  it("given a name held by another that exists, when claimed, then AlreadyExists", () => {
    expect(() => nameDecider.decide(claim(B), held(A))).toThrow(BerthError);
    expect(() => nameDecider.decide(claim(B), held(A))).toThrow(/'web' is already in use/);
  });
  it("given a claim by the same owner (a retry), then nothing", () => {
    expect(nameDecider.decide(claim(A), held(A))).toEqual([]);
  });
  it("given a claim whose owner never came to exist, then it holds for a while, then it is void", () => {
    const gone = () => false;
    expect(() => nameDecider.decide(claim(B, T + 1000, gone), held(A))).toThrow(/already in use/);
    expect(nameDecider.decide(claim(B, T + STALE_CLAIM_MS + 1, gone), held(A))).toHaveLength(1);
  });
  it("given a release by its owner, then NameReleased; by anyone else, nothing", () => {
    expect(nameDecider.decide({ type: "Release", owner: A }, held(A))).toEqual([{ type: "NameReleased", data: { name: "web", kind: "container", owner: A } }]);
    expect(nameDecider.decide({ type: "Release", owner: B }, held(A))).toEqual([]);
    expect(nameDecider.decide({ type: "Release", owner: A }, null)).toEqual([]);
  });
  it("keys containers' and pods' names apart", () => {
    expect(nameKey("container", "web")).not.toBe(nameKey("pod", "web"));
    expect(nameKey("container", "web")).toMatch(/^[0-9a-f]{64}$/);
  });
});
