// The hash chain check (chain.ts): a pure function over one subject's stored messages.
import { describe, expect, it } from "vitest";
import { checkChain, hashOf, type RawMessage } from "../../src/events/chain.js";

const SUBJ = "berth.ev.container.x";
const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

/** A chain as the store writes it: each message names the previous one's hash. */
function chain(n: number, firstSeq = 1, step = 2): RawMessage[] {
  const out: RawMessage[] = [];
  let prev: string | null = null;
  for (let i = 0; i < n; i++) {
    const data = enc({ type: "E", i, prevHash: prev });
    out.push({ seq: firstSeq + i * step, data });
    prev = hashOf(data);
  }
  return out;
}

describe("checkChain", () => {
  it("given an intact chain, then no problem", () => {
    expect(checkChain(SUBJ, chain(5))).toEqual([]);
  });

  it("given an empty history, then no problem", () => {
    expect(checkChain(SUBJ, [])).toEqual([]);
  });

  it("given a message whose bytes were edited, then the break is reported at it, once", () => {
    const msgs = chain(5);
    msgs[2] = { ...msgs[2], data: enc({ type: "E", i: 99, prevHash: hashOf(msgs[1].data) }) };
    expect(checkChain(SUBJ, msgs)).toEqual([{ subject: SUBJ, seq: 5, kind: "edited", detail: expect.stringContaining("does not match the bytes of seq 5") }]);
  });

  it("given an event inserted without prevHash (a raw publish), then it is reported as inserted", () => {
    const msgs = chain(4);
    msgs.splice(2, 0, { seq: 4, data: enc({ type: "ContainerRemoved" }) });
    expect(checkChain(SUBJ, msgs)).toMatchObject([{ seq: 4, kind: "inserted" }]);
  });

  it("given an event inserted with the right prevHash, then the next event shows it was put between", () => {
    const msgs = chain(4);
    msgs.splice(2, 0, { seq: 4, data: enc({ type: "ContainerRemoved", prevHash: hashOf(msgs[1].data) }) });
    expect(checkChain(SUBJ, msgs)).toMatchObject([{ seq: 4, kind: "inserted", detail: expect.stringContaining("was put between") }]);
  });

  it("given an event that claims to be the first but is not, then it is inserted", () => {
    const msgs = chain(3);
    msgs.push({ seq: 99, data: enc({ type: "ContainerCreated", prevHash: null }) });
    expect(checkChain(SUBJ, msgs)).toMatchObject([{ seq: 99, kind: "inserted" }]);
  });

  it("given a history whose first events were cut, then the first remaining one is a cut", () => {
    expect(checkChain(SUBJ, chain(5).slice(2))).toMatchObject([{ seq: 5, kind: "cut" }]);
  });

  it("given events cut from the middle where the stream shows deleted messages, then a cut", () => {
    const msgs = chain(5);
    const kept = [msgs[0], msgs[1], msgs[3], msgs[4]];
    expect(checkChain(SUBJ, kept, [msgs[2].seq])).toMatchObject([{ seq: 7, kind: "cut" }]);
    // Without the stream's word on deletions it reads as an edit of the event before the gap.
    expect(checkChain(SUBJ, kept)).toMatchObject([{ seq: 3, kind: "edited" }]);
  });

  it("given a log from before the chain (no prevHash), then no problem: it is unchained", () => {
    const legacy = [1, 2, 3].map((i) => ({ seq: i, data: enc({ type: "E", i }) }));
    expect(checkChain(SUBJ, legacy)).toEqual([]);
  });

  it("given legacy events followed by chained ones, then the chain starts at the upgrade and must link to the last legacy event", () => {
    const legacy = [1, 2].map((i) => ({ seq: i, data: enc({ type: "E", i }) }));
    const next = { seq: 3, data: enc({ type: "E", i: 3, prevHash: hashOf(legacy[1].data) }) };
    expect(checkChain(SUBJ, [...legacy, next])).toEqual([]);
    const bad = { seq: 3, data: enc({ type: "E", i: 3, prevHash: hashOf(legacy[0].data) }) };
    expect(checkChain(SUBJ, [...legacy, bad])).toMatchObject([{ seq: 2, kind: "inserted" }]);
  });

  it("given bytes that are not JSON inside a chain, then they are an insertion", () => {
    const msgs = chain(3);
    msgs.splice(1, 0, { seq: 2, data: new TextEncoder().encode("garbage") });
    expect(checkChain(SUBJ, msgs)).toMatchObject([{ seq: 2, kind: "inserted" }]);
  });
});
