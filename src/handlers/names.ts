// Claiming and releasing a name in the log (aggregates/name): the cluster-wide half of "a name is
// unique". Each write's event ids derive from the request (ctx.requestId) and the owner, so a
// retried create claims once, and a release after a crash is stored once.
import { nameKey, type NameCommands, type NameKind } from "../aggregates/name/index.js";
import type { Ctx } from "./command-service.js";

/** AlreadyExists when another container (or pod) holds `name`; a no-op when `owner` does. */
export async function claimName(names: NameCommands | undefined, kind: NameKind, name: string, owner: string, ctx: Ctx, exists: (owner: string) => boolean): Promise<void> {
  if (!names) return;
  await names.handle(nameKey(kind, name), { type: "Claim", name, kind, owner, now: Date.now(), exists }, ctx, `NameClaim:${owner}`);
}

/** The name is free again (its holder is removed); a no-op when `owner` does not hold it. */
export async function releaseName(names: NameCommands | undefined, kind: NameKind, name: string, owner: string, ctx: Ctx, giveUp: () => boolean = () => false): Promise<void> {
  if (!names) return;
  await names.appendFact(nameKey(kind, name), (s) => names.decider.decide({ type: "Release", owner }, s), { ...ctx, requestId: `release:${kind}:${owner}` }, `NameRelease:${owner}`, giveUp);
}
