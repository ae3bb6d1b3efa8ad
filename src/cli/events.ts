// The log's verbs: events (and -f), replay.
import type { Command } from "commander";
import type { ContainerView } from "../contract/views.js";
import { containerTable, eventLine, type EventRow } from "./format.js";
import { collect, count, enc, out, printJson, type Json, type VerbTable } from "./kit.js";

export const verbs: VerbTable = {
  events: (program, cli, name) =>
    cli
    .verb(program, name, "show the event log")
    .option("--since <seq|time>", "from this sequence number (inclusive) or RFC 3339 time")
    .option("--until <seq|time>", "up to this sequence number (inclusive) or RFC 3339 time")
    .option("--type <type>", "only these event types (comma-separated or repeated)", collect)
    .option("--container <ref>", "only this container's events")
    .option("--limit <n>", "at most this many events", count)
    .option("-f, --follow", "keep streaming new events")
    .action(async (o: Json & { since?: string; until?: string; type?: string[]; container?: string; limit?: number; follow?: boolean }, cmd: Command) => {
      const q = new URLSearchParams();
      if (o.since) q.set("since", o.since);
      if (o.until) q.set("until", o.until);
      if (o.type?.length) q.set("type", o.type.join(","));
      if (o.container) q.set("container", o.container);
      if (o.limit !== undefined) q.set("limit", String(o.limit));
      const route = `/v1/events${q.size ? `?${q}` : ""}`;
      const c = await cli.client(cmd);
      if (!o.follow) {
        const r = await c.get<{ events: EventRow[] }>(route);
        if (o.json) printJson(r.events);
        else out(eventLine(null) + r.events.map(eventLine).join(""));
        return;
      }
      const ac = new AbortController();
      process.once("SIGINT", () => ac.abort());
      if (!o.json) out(eventLine(null));
      await c.stream(route, (data) => out(o.json ? `${data}\n` : eventLine(JSON.parse(data) as EventRow)), ac.signal);
    }),

  replay: (program, cli, name) =>
    cli
    .verb(program, name, "show the containers as they were at a point of the log")
    .requiredOption("--at <seq|time>", "a sequence number or an RFC 3339 time")
    .action(async (o: Json & { at: string }, cmd: Command) => {
      const r = await (await cli.client(cmd)).get<{ seq: number; containers: ContainerView[] }>(`/v1/state?at=${enc(o.at)}`);
      if (o.json) printJson(r);
      else out(`as of event ${r.seq}\n` + containerTable(r.containers));
    }),
};
