// The hash chain of a subject: each event carries `prevHash`, the sha256 (hex) of the stored bytes
// of the subject's previous message (null for the first). Checking it finds the first place
// where a history was edited, had an event inserted, or lost events. Events written before the
// chain existed carry no prevHash: a subject's leading run of them is "unchained" (reported,
// not a break), but once an event of a subject is chained, every later one must be.
import { createHash } from "node:crypto";

export const hashOf = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

export type ChainBreak = "edited" | "inserted" | "cut";

export interface ChainProblem {
  subject: string;
  seq: number;
  kind: ChainBreak;
  detail: string;
}

export interface RawMessage {
  seq: number;
  data: Uint8Array;
}

const dec = new TextDecoder();

/** The message's prevHash: a hash, null, or undefined when it has none (or is not an event). */
export function prevHashOf(data: Uint8Array): string | null | undefined {
  try {
    const o = JSON.parse(dec.decode(data)) as { prevHash?: unknown };
    if (o && typeof o === "object" && (o.prevHash === null || typeof o.prevHash === "string")) return o.prevHash;
  } catch {
    /* not JSON: no hash either */
  }
  return undefined;
}

/** Follows one subject's messages in order; `push` returns the first break, once. */
export class ChainChecker {
  private prev: { seq: number; hash: string } | null = null;
  private before: { seq: number; hash: string } | null = null;
  private chained = false;
  broken = false;
  checked = 0;
  /** Leading events without prevHash (a log from before the chain). */
  unchained = 0;

  constructor(
    readonly subject: string,
    /** Sequences deleted from the stream, to tell a cut from an edit. */
    private readonly deleted: (from: number, to: number) => boolean = () => false,
  ) {}

  push(m: RawMessage): ChainProblem | null {
    this.checked++;
    const hash = hashOf(m.data);
    const problem = this.broken ? null : this.judge(m, prevHashOf(m.data));
    if (problem) this.broken = true;
    this.before = this.prev;
    this.prev = { seq: m.seq, hash };
    return problem;
  }

  private judge(m: RawMessage, claimed: string | null | undefined): ChainProblem | null {
    const at = (seq: number, kind: ChainBreak, detail: string): ChainProblem => ({ subject: this.subject, seq, kind, detail });
    const prev = this.prev;
    if (claimed === undefined) {
      if (!this.chained) {
        this.unchained++;
        return null;
      }
      return at(m.seq, "inserted", `seq ${m.seq} carries no prevHash after chained events: no berth daemon wrote it here`);
    }
    if (claimed === null) {
      if (!prev) {
        this.chained = true;
        return null;
      }
      return at(m.seq, "inserted", `seq ${m.seq} claims to be the subject's first event but follows seq ${prev.seq}`);
    }
    this.chained = true;
    if (!prev) return at(m.seq, "cut", `seq ${m.seq} follows an event that is not in the log: what came before it was cut`);
    if (claimed === prev.hash) return null;
    if (this.before && claimed === this.before.hash) {
      return at(prev.seq, "inserted", `seq ${m.seq} follows seq ${this.before.seq}: seq ${prev.seq} was put between them`);
    }
    if (this.deleted(prev.seq + 1, m.seq - 1)) {
      return at(m.seq, "cut", `seq ${m.seq} does not follow seq ${prev.seq}, and messages between them are missing from the stream (deleted, or dropped by the server)`);
    }
    return at(prev.seq, "edited", `seq ${m.seq}'s prevHash does not match the bytes of seq ${prev.seq}: it was edited (or events between them were cut)`);
  }
}

/** The first break of one subject's messages (in order), or none. */
export function checkChain(subject: string, msgs: readonly RawMessage[], deleted?: readonly number[]): ChainProblem[] {
  const gone = deleted ? (a: number, b: number) => deleted.some((s) => s >= a && s <= b) : undefined;
  const c = new ChainChecker(subject, gone);
  const out: ChainProblem[] = [];
  for (const m of msgs) {
    const p = c.push(m);
    if (p) out.push(p);
  }
  return out;
}
