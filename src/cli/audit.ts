// `berth audit verify [--container X] [--json]`: the daemon checks the log's hash chains and the
// transition table (GET /v1/audit/verify); exit status 1 when it found a problem.
import type { Command } from "commander";
import type { AuditReport } from "../contract/audit.js";
import type { Client } from "./client.js";
import { table } from "./format.js";

export interface AuditDeps {
  client: (cmd: Command) => Promise<Client>;
  verb: (parent: Command, name: string, description: string) => Command;
  setExitCode: (code: number) => void;
}

export function addAuditVerbs(program: Command, d: AuditDeps): void {
  const audit = program.command("audit").description("check that the event log was not tampered with");
  d.verb(audit, "verify", "verify the hash chains and the transition table of the log (or of one container's history)")
    .option("--container <ref>", "only this container's history")
    .action(async (o: { json?: boolean; container?: string }, cmd: Command) => {
      const q = o.container ? `?container=${encodeURIComponent(o.container)}` : "";
      const r = await (await d.client(cmd)).get<AuditReport>(`/v1/audit/verify${q}`);
      if (!r.ok) d.setExitCode(1);
      if (o.json) return void process.stdout.write(JSON.stringify(r, null, 2) + "\n");
      process.stdout.write(formatReport(r));
    });
}

export function formatReport(r: AuditReport): string {
  const head = `${r.checked} events in ${r.subjects} histories checked${r.unchained ? ` (${r.unchained} from before the hash chain, unchained)` : ""}: `;
  if (r.ok) return head + "ok\n";
  const n = r.problems.length;
  return (
    head +
    `${n}${r.truncated ? "+" : ""} problem${n === 1 ? "" : "s"}\n` +
    table(["SEQ", "KIND", "SUBJECT", "DETAIL"], r.problems.map((p) => [String(p.seq), p.kind, p.subject, p.detail]))
  );
}
