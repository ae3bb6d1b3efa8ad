// A second aggregate that exists only in the tests: a tally that is opened, counted up and
// closed. It proves that the command service and the projection registry are generic: nothing in
// src/ names it.
import type { AggregateState, Decider } from "../../src/aggregates/decider.js";
import type { Envelope } from "../../src/events/types.js";
import { Type } from "@sinclair/typebox";
import { registerEventTypes } from "../../src/events/validate.js";
import { BerthError, ErrorCode } from "../../src/shared/errors.js";

export interface TallyState extends AggregateState {
  total: number;
  closed: boolean;
}

export type TallyEvent =
  | Envelope<"TallyOpened", { start: number }>
  | Envelope<"TallyAdded", { n: number }>
  | Envelope<"TallyClosed", Record<string, never>>;

export type TallyCommand = { type: "Open"; start: number } | { type: "Add"; n: number } | { type: "Close" };

type Stored = TallyEvent & { seq: number; subject: string };

export const tallyDecider: Decider<TallyState, TallyCommand, TallyEvent> = {
  kind: "tally",
  owns: (t): t is TallyEvent["type"] => t.startsWith("Tally"),
  decide(cmd, s) {
    switch (cmd.type) {
      case "Open":
        if (s) throw new BerthError(ErrorCode.AlreadyExists, "tally is open");
        return [{ type: "TallyOpened", data: { start: cmd.start } }];
      case "Add":
        if (!s) throw new BerthError(ErrorCode.NotFound, "no tally");
        if (cmd.n <= 0) throw new BerthError(ErrorCode.InvalidArgument, "add a positive number");
        return [{ type: "TallyAdded", data: { n: cmd.n } }];
      case "Close":
        if (!s) throw new BerthError(ErrorCode.NotFound, "no tally");
        return [{ type: "TallyClosed", data: {} }];
    }
  },
  evolve(s, event) {
    const e = event as Stored;
    const id = e.subject.slice(e.subject.lastIndexOf(".") + 1);
    switch (e.type) {
      case "TallyOpened":
        return { id, version: e.seq, total: e.data.start, closed: false };
      case "TallyAdded":
        return s && { ...s, version: e.seq, total: s.total + e.data.n };
      case "TallyClosed":
        return s && { ...s, version: e.seq, closed: true };
    }
  },
  refuses: (s, e) => (e.type === "TallyOpened" ? (s ? "the tally is open already" : null) : s ? null : "no such tally"),
  gone: (s) => s.closed,
};

// Its events pass the log's trust boundary like berth's own: strict payload schemas, its own subjects.
registerEventTypes("tally", {
  TallyOpened: Type.Object({ start: Type.Integer() }, { additionalProperties: false }),
  TallyAdded: Type.Object({ n: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
  TallyClosed: Type.Object({}, { additionalProperties: false }),
});
