// `GET /v1/audit/verify` and `berth audit verify`: read the stored messages as they are, check
// each subject's hash chain (chain.ts), fold them into a fresh read model to check the transition
// table, and list what that fold quarantines. Nothing here trusts the daemon's own model.
import { ChainChecker } from "../events/chain.js";
import type { EventStore } from "../events/store.js";
import { containerSubject } from "../events/types.js";
import { admit } from "../events/validate.js";
import { ReadModel } from "../projections/read-model.js";
import type { AuditProblem, AuditReport } from "../contract/audit.js";

export type { AuditProblem, AuditReport } from "../contract/audit.js";

const MAX_PROBLEMS = 10_000;

/** Verify one container's history (`id`) or the whole log. */
export async function verifyLog(store: EventStore, opts: { containerId?: string } = {}): Promise<AuditReport> {
  const subject = opts.containerId ? containerSubject(opts.containerId) : undefined;
  const deleted = await store.deletedSeqs();
  deleted.sort((a, b) => a - b);
  // Sequences an unfiltered read skipped: messages the server lost or dropped (e.g. a block it
  // found corrupt) without a delete record.
  const unseen: [number, number][] = [];
  let lastSeen = 0;
  const gone = (from: number, to: number): boolean => {
    if (unseen.some(([a, b]) => a <= to && b >= from)) return true;
    // Any deleted sequence in [from, to]: the first one ≥ from, by binary search.
    let lo = 0;
    let hi = deleted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (deleted[mid] < from) lo = mid + 1;
      else hi = mid;
    }
    return lo < deleted.length && deleted[lo] <= to;
  };
  const problems: AuditProblem[] = [];
  let found = 0;
  const report = (p: AuditProblem) => {
    if (++found <= MAX_PROBLEMS) problems.push(p);
  };
  const chains = new Map<string, ChainChecker>();
  const model = new ReadModel();
  model.onQuarantine((q) => report({ subject: q.subject, seq: q.seq, kind: q.kind, detail: q.type ? `${q.type}: ${q.reason}` : q.reason }));
  const checked = await store.readRaw({ subject }, (m) => {
    if (!subject && m.seq > lastSeen + 1) unseen.push([lastSeen + 1, m.seq - 1]);
    lastSeen = m.seq;
    let c = chains.get(m.subject);
    if (!c) chains.set(m.subject, (c = new ChainChecker(m.subject, gone)));
    const p = c.push(m);
    if (p) report(p);
    model.apply(admit(m.subject, m.seq, m.data));
  });
  // The stream denies deletes: in the whole log, every deleted message is a problem of its own.
  if (!subject) for (const seq of deleted) report({ subject: "*", seq, kind: "cut", detail: `message ${seq} was deleted from the stream` });
  problems.sort((a, b) => a.seq - b.seq);
  let unchained = 0;
  for (const c of chains.values()) unchained += c.unchained;
  return { checked, subjects: chains.size, unchained, ok: found === 0, problems, truncated: found > problems.length };
}
