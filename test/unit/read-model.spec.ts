// Ref resolution and folding of the read model.
import { describe, expect, it } from "vitest";
import { ReadModel } from "../../src/projections/read-model.js";
import type { StoredEvent } from "../../src/events/types.js";

let seq = 0;
function created(id: string, name: string): StoredEvent {
  seq++;
  return {
    type: "ContainerCreated", v: 1, eventId: `e${seq}`, at: new Date().toISOString(), node: "n1", actor: "t",
    correlationId: "c", causationId: null, seq, subject: `berth.ev.container.${id}`,
    data: { id, name, image: "busybox:latest", imageDigest: "sha256:x", node: "n1", spec: { image: "busybox:latest" } },
  };
}

describe("ref resolution", () => {
  const m = new ReadModel();
  const a = "abcd1" + "0".repeat(59);
  const b = "abcd2" + "0".repeat(59);
  m.apply(created(a, "web"));
  m.apply(created(b, "db"));

  it("given a full id, a name, or a unique prefix of 4+, then that container", () => {
    expect(m.resolve(a)).toMatchObject({ ok: true, c: { id: a } });
    expect(m.resolve("db")).toMatchObject({ ok: true, c: { id: b } });
    expect(m.resolve("abcd2")).toMatchObject({ ok: true, c: { id: b } });
  });

  it("given a prefix shared by two, then ambiguous", () => {
    expect(m.resolve("abcd")).toEqual({ ok: false, why: "ambiguous" });
  });

  it("given a prefix under 4 characters or an unknown ref, then none", () => {
    expect(m.resolve("abc")).toEqual({ ok: false, why: "none" });
    expect(m.resolve("nosuch")).toEqual({ ok: false, why: "none" });
  });

  it("ignores an event it has already applied", () => {
    const before = m.seq;
    m.apply({ ...created("f".repeat(64), "late"), seq: 1 });
    expect(m.seq).toBe(before);
    expect(m.resolve("late").ok).toBe(false);
  });
});
