// `berth upgrade` and `berth rollback`: the in-place upgrade saga (docs/API.md "Upgrade in place").
import { InvalidArgumentError, type Command } from "commander";
import { parseBytes, parseKeyValues } from "./args.js";
import { out, printJson, type Json, type Register } from "./kit.js";

interface UpgradeOptions extends Json {
  healthGate?: number;
  entrypoint?: string;
  cmd?: string;
  env?: string[];
  label?: string[];
  memory?: number;
  cpus?: number;
}

const collectStr = (s: string, prev: string[] = []) => [...prev, s];

/** `30`, `30s`, `2m`, `1m30s` → seconds. */
export function parseGate(s: string): number {
  const m = /^(?:(\d+)m)?(?:(\d+)s?)?$/.exec(s.trim());
  if (!s.trim() || !m || (m[1] === undefined && m[2] === undefined)) throw new InvalidArgumentError("a duration: 30, 30s, 2m or 1m30s");
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

/** `--cmd` as a JSON array (`'["sh","-c","x"]'`) or words split at spaces. */
export function parseArgv(s: string): string[] {
  const t = s.trim();
  if (t.startsWith("[")) {
    let v: unknown;
    try {
      v = JSON.parse(t);
    } catch {
      throw new InvalidArgumentError("a JSON array of strings, or words");
    }
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new InvalidArgumentError("a JSON array of strings");
    return v as string[];
  }
  return t.split(/\s+/).filter(Boolean);
}

function num(s: string): number {
  const n = Number(s);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError("a number ≥ 0");
  return n;
}

/** The reply deadline: longer than the daemon's own for the saga (two stops and starts, the gate). */
const sagaMs = (gateSec = 60) => (gateSec + 180) * 1000;

interface SagaReply {
  id: string;
  state: string;
  image: string;
  revision: number;
}

const report = (o: Json, r: SagaReply) => (o.json ? printJson(r) : out(`${r.id} ${r.image} revision ${r.revision} ${r.state}\n`));

export const upgrade: Register = (program, cli, name) =>
  cli
    .verb(program, name, "swap a container's image in place (same id, name, IP and volumes); rolls back by itself when the new one fails")
    .option("--health-gate <duration>", "how long the new revision must stay up and healthy (30, 30s, 2m); default from its healthcheck, else 3s", parseGate)
    .option("--entrypoint <path>", "the new revision's entrypoint (\"\" clears it)")
    .option("--cmd <argv>", "the new revision's command: words, or a JSON array", parseArgv)
    .option("-e, --env <K=V>", "set an environment variable (repeatable)", collectStr)
    .option("-l, --label <k=v>", "set a label (repeatable)", collectStr)
    .option("-m, --memory <bytes>", "memory limit: bytes or 64m, 1g…", parseBytes)
    .option("--cpus <n>", "CPU limit, e.g. 0.5", num)
    .argument("<ref>", "container name or id")
    .argument("<image>", "the new image")
    .action(async (ref: string, image: string, o: UpgradeOptions, cmd: Command) => {
      const body: Record<string, unknown> = { id: ref, image };
      if (o.healthGate !== undefined) body.healthGateSec = o.healthGate;
      if (o.entrypoint !== undefined) body.entrypoint = o.entrypoint === "" ? [] : [o.entrypoint];
      if (o.cmd !== undefined) body.cmd = o.cmd;
      if (o.env?.length) body.env = o.env;
      if (o.label?.length) body.labels = parseKeyValues("label", o.label);
      const resources: Record<string, number> = {};
      if (o.memory !== undefined) resources.memoryBytes = o.memory;
      if (o.cpus !== undefined) resources.cpus = o.cpus;
      if (Object.keys(resources).length) body.resources = resources;
      report(o, await (await cli.client(cmd)).command<SagaReply>("berth.cmd.container.upgrade", body, sagaMs(o.healthGate)));
    });

export const rollback: Register = (program, cli, name) =>
  cli
    .verb(program, name, "go back to the revision before the last upgrade (its image, config and rw layer)")
    .argument("<ref>", "container name or id")
    .action(async (ref: string, o: Json, cmd: Command) => {
      report(o, await (await cli.client(cmd)).command<SagaReply>("berth.cmd.container.rollback", { id: ref }, sagaMs(0)));
    });
