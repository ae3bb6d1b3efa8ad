// What `GET /v1/audit/verify` answers (API.md), as the CLI and other clients read it.

export interface AuditProblem {
  /** The subject, or `*` for a message deleted from the stream (its subject is gone with it). */
  subject: string;
  seq: number;
  /** edited, inserted, cut: the first break of a subject's chain; invalid, transition: a quarantined event. */
  kind: "edited" | "inserted" | "cut" | "invalid" | "transition";
  detail: string;
}

export interface AuditReport {
  /** Messages read. */
  checked: number;
  subjects: number;
  /** Events of subjects' leading runs without prevHash (a log from before the chain): not checked, not problems. */
  unchained: number;
  ok: boolean;
  problems: AuditProblem[];
  /** More problems were found than listed. */
  truncated: boolean;
}
