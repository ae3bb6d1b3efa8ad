// The name aggregate: who holds a container's (or a pod's) name, on `berth.ev.name.<key>`, so
// that a name is unique across every node of the cluster. Two daemons that create the same name
// at once both append a claim with the expected version they read; the store takes one and
// refuses the other (a version conflict), whose decision then sees the name taken:
// `AlreadyExists`. The read model's own byName index is what queries use; this is what writers
// agree on.
import { nameKey, type NameEvent } from "../../events/types.js";
import { alreadyExists } from "../../shared/errors.js";
import type { AggregateCommands, AggregateState, Decider } from "../decider.js";

export type NameKind = "container" | "pod";

export interface NameState extends AggregateState {
  name: string;
  kind: NameKind;
  /** The container or pod holding it, and since when; null once released. */
  owner: string | null;
  claimedAt: string | null;
}

export type NameCommand =
  | { type: "Claim"; name: string; kind: NameKind; owner: string; now: number; exists: (owner: string) => boolean }
  | { type: "Release"; owner: string };

/** A claim whose owner never came to exist (its creator died between the two) is void after this. */
export const STALE_CLAIM_MS = 60_000;

export { nameKey };

export const nameDecider: Decider<NameState, NameCommand, NameEvent> = {
  kind: "name",
  owns: (type): type is NameEvent["type"] => type.startsWith("Name"),
  decide(cmd, s) {
    if (cmd.type === "Release") return s?.owner === cmd.owner ? [{ type: "NameReleased", data: { name: s.name, kind: s.kind, owner: cmd.owner } }] : [];
    if (s?.owner === cmd.owner) return [];
    if (s?.owner && (cmd.exists(s.owner) || cmd.now - Date.parse(s.claimedAt ?? "") < STALE_CLAIM_MS)) {
      throw alreadyExists(`the ${cmd.kind === "pod" ? "pod " : ""}name '${cmd.name}' is already in use`);
    }
    return [{ type: "NameClaimed", data: { name: cmd.name, kind: cmd.kind, owner: cmd.owner } }];
  },
  evolve(s, e) {
    const base = { id: s?.id ?? e.subject.slice(e.subject.lastIndexOf(".") + 1), name: e.data.name, kind: e.data.kind, version: e.seq };
    return e.type === "NameClaimed" ? { ...base, owner: e.data.owner, claimedAt: e.at } : { ...base, owner: null, claimedAt: null };
  },
  refuses: (s, e) => (e.type === "NameReleased" && s?.owner !== e.data.owner ? `NameReleased by ${e.data.owner}, which does not hold '${e.data.name}'` : null),
  // A released name stays (owner null): the next claim must name its subject's last sequence.
  gone: () => false,
};

export type NameCommands = AggregateCommands<NameState, NameCommand, NameEvent>;
