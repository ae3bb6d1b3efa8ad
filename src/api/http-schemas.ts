// TypeBox schemas of the HTTP query API: one source for request validation, response
// serialization and the OpenAPI document (API.md "Queries: HTTP").
import { Type, type Static } from "@sinclair/typebox";
import { ContainerStateName, ContainerView } from "../contract/views.js";

const Strict = { additionalProperties: false } as const;

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: "InvalidArgument, Unauthenticated, NotFound, Conflict, Unavailable, …" }),
      message: Type.String(),
    }),
  },
  { description: "An error" },
);

/** A sequence number or an RFC 3339 time; parsed by the handler, which knows which it is. */
const point = (description: string) => Type.String({ minLength: 1, maxLength: 64, description });

export const RefParams = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 128 }) }, Strict);
export type RefParams = Static<typeof RefParams>;

export const ListQuery = Type.Object(
  {
    all: Type.Optional(Type.Boolean({ description: "every container not yet removed, not only running and paused" })),
    node: Type.Optional(Type.String({ maxLength: 128 })),
    state: Type.Optional({ ...ContainerStateName, description: "only containers in this state (implies all)" }),
    label: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 4352 }), {
        maxItems: 64,
        description: "k=v (value must match) or k (label present); may repeat, all must match",
      }),
    ),
  },
  Strict,
);
export type ListQuery = Static<typeof ListQuery>;

// tail and since are checked by the handler (logs-query.ts), which says what was wrong and why.
export const LogsQuery = Type.Object(
  {
    tail: Type.Optional(Type.String({ maxLength: 32, description: "the last N lines (0 to 1000000), or all (the default)" })),
    since: Type.Optional(
      Type.String({ maxLength: 64, description: "only lines at or after: an RFC 3339 time, a duration before now (10m, 1h30m) or Unix seconds; not in the future" }),
    ),
    timestamps: Type.Optional(Type.Boolean({ description: "prefix each line with its RFC 3339 time (nanoseconds)" })),
    follow: Type.Optional(Type.Boolean({ description: "keep streaming new lines until the container is no longer running or the client goes" })),
  },
  Strict,
);
export type LogsQuery = Static<typeof LogsQuery>;

export const EventsQuery = Type.Object(
  {
    since: Type.Optional(point("first event: a sequence number (inclusive) or an RFC 3339 time (at ≥ since)")),
    until: Type.Optional(point("last event: a sequence number (inclusive) or an RFC 3339 time (at ≤ until)")),
    type: Type.Optional(Type.String({ maxLength: 4096, description: "event types, comma-separated" })),
    container: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "container ref" })),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 10_000, description: "at most this many events (default 1000; a stream ends after it when given)" }),
    ),
  },
  Strict,
);
export type EventsQuery = Static<typeof EventsQuery>;

export const StateQuery = Type.Object({ at: point("a sequence number or an RFC 3339 time") }, Strict);
export type StateQuery = Static<typeof StateQuery>;

// Events are open records: their payloads differ per type and grow by version.
export const EventView = Type.Object(
  {
    seq: Type.Integer(),
    subject: Type.String(),
    type: Type.String(),
    v: Type.Integer(),
    eventId: Type.String(),
    at: Type.String({ format: "date-time" }),
    node: Type.String(),
    actor: Type.String(),
    correlationId: Type.String(),
    causationId: Type.Union([Type.String(), Type.Null()]),
    data: Type.Unknown(),
  },
  { additionalProperties: true, required: ["seq", "subject", "type", "v", "eventId"] },
);

export const ContainerList = Type.Object({ containers: Type.Array(ContainerView) });
export const EventList = Type.Object({ events: Type.Array(EventView) });
export const StateView = Type.Object({
  seq: Type.Integer({ description: "the last event applied" }),
  containers: Type.Array(ContainerView),
});

const ImageView = Type.Object(
  {
    name: Type.String(),
    digest: Type.String(),
    sizeBytes: Type.Integer(),
    node: Type.String(),
    importedAt: Type.String({ format: "date-time" }),
    config: Type.Unknown(),
  },
  { additionalProperties: true },
);
export const ImageList = Type.Object({ images: Type.Array(ImageView) });

const NodeView = Type.Object(
  {
    name: Type.String(),
    httpUrl: Type.String(),
    version: Type.String(),
    startedAt: Type.String({ format: "date-time" }),
    lastSeenSeq: Type.Integer(),
    up: Type.Boolean({ description: "its daemon beat in the last 10 s" }),
    lastSeen: Type.Union([Type.String({ format: "date-time" }), Type.Null()], { description: "its daemon's last heartbeat" }),
  },
  { additionalProperties: true },
);
export const NodeList = Type.Object({ nodes: Type.Array(NodeView) });
export const AuditQuery = Type.Object(
  {
    container: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "container ref: verify only its history" })),
    pod: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: "pod ref (pods do not exist yet: refused)" })),
  },
  Strict,
);
export type AuditQuery = Static<typeof AuditQuery>;
const Quarantined = Type.Object({
  seq: Type.Integer(),
  subject: Type.String(),
  type: Type.Union([Type.String(), Type.Null()]),
  reason: Type.String(),
  kind: Type.Union([Type.Literal("invalid"), Type.Literal("transition")]),
});
export const AuditReport = Type.Object({
  checked: Type.Integer({ description: "messages read" }),
  subjects: Type.Integer(),
  unchained: Type.Integer({ description: "events of subjects' leading runs written before the hash chain: not checked, not problems" }),
  ok: Type.Boolean(),
  problems: Type.Array(
    Type.Object({
      subject: Type.String({ description: "the subject, or * for a message deleted from the stream" }),
      seq: Type.Integer(),
      kind: Type.Union(["edited", "inserted", "cut", "invalid", "transition"].map((k) => Type.Literal(k))),
      detail: Type.String(),
    }),
  ),
  truncated: Type.Boolean({ description: "more problems were found than listed (10,000)" }),
});
export const QuarantineList = Type.Object({
  total: Type.Integer({ description: "events quarantined by this daemon's read model" }),
  events: Type.Array(Quarantined, { description: "the latest 1,000 of them" }),
});

export const Phase = Type.Object({ phase: Type.String({ description: "ready, or recovery still running" }) });
export const Health = Type.Object({ status: Type.Literal("ok") });

export const text = (description: string) => ({
  description,
  content: { "text/plain": { schema: Type.String() } },
});

/** Responses every authenticated route may give besides its own. */
export const errors = (...codes: number[]) =>
  Object.fromEntries([401, ...codes].map((c) => [c, ErrorBody]));
