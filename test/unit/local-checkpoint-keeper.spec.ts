// Which containers keep a local copy on a node (handlers/local-checkpoints.ts), given/when/then.
import { describe, expect, it } from "vitest";
import { wantsCopy } from "../../src/handlers/local-checkpoints.js";
import type { ContainerState } from "../../src/aggregates/container/state.js";
import type { PodState } from "../../src/aggregates/pod/index.js";

const container = (o: Partial<ContainerState> = {}) => ({ id: "c1", node: "n1", removed: false, annotations: {}, spec: { image: "busybox" }, ...o }) as ContainerState;
const pod = (annotations: Record<string, string>, removed = false) => ({ id: "p1", removed, spec: { annotations } }) as unknown as PodState;
const marked = { "berth.io/checkpoint": "true" };

describe("wantsCopy", () => {
  it("given a container of this node annotated berth.io/checkpoint=true, then it has a copy here", () => {
    expect(wantsCopy(container({ annotations: marked }), "n1")).toBe(true);
  });
  it("given one without the annotation, or with it on another node, or removed, or none at all, then no copy here", () => {
    expect(wantsCopy(container(), "n1")).toBe(false);
    expect(wantsCopy(container({ annotations: marked }), "n2")).toBe(false);
    expect(wantsCopy(container({ annotations: marked, removed: true }), "n1")).toBe(false);
    expect(wantsCopy(undefined, "n1")).toBe(false);
  });
  it("given a member of a pod annotated so, then it has a copy; a removed pod's member does not by the pod's annotation", () => {
    const member = container({ spec: { image: "busybox", pod: "p1" } });
    expect(wantsCopy(member, "n1", pod(marked))).toBe(true);
    expect(wantsCopy(member, "n1", pod(marked, true))).toBe(false);
    expect(wantsCopy(member, "n1", pod({}))).toBe(false);
  });
});
