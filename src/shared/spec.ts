// The container spec of API.md as one TypeBox schema: it is the TypeScript type, the validator
// (unknown fields rejected) and the OpenAPI component at once.
import { Type, type Static } from "@sinclair/typebox";

export const NAME_PATTERN = "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$";
export const NAME_RE = new RegExp(NAME_PATTERN);
/** One DNS label (RFC 1123), as sethostname and /etc/hosts take it. */
export const HOSTNAME_PATTERN = "^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$";

/** A container's network mode: what its spec says, `none` for specs written before bridge existed. */
export const networkMode = (spec: { network?: { mode?: "none" | "host" | "bridge" } }) => spec.network?.mode ?? "none";

/** The hostname a container gets: its spec's, else its name cut to one DNS label. */
export const hostnameFor = (spec: { hostname?: string }, name: string) =>
  spec.hostname ?? (name.replace(/[^a-zA-Z0-9-]/g, "-").replace(/^-+|-+$/g, "").slice(0, 63).replace(/-+$/, "") || "berth");

const Strict = { additionalProperties: false } as const;

/** A string list with sane limits: argv, env. */
const StrList = (maxItems: number, maxLength: number) =>
  Type.Array(Type.String({ maxLength }), { maxItems });

export const Backoff = Type.Object(
  {
    initialMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
    maxMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400_000 })),
    resetAfterMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
  },
  Strict,
);

export const RestartPolicy = Type.Object(
  {
    name: Type.Union([
      Type.Literal("no"),
      Type.Literal("always"),
      Type.Literal("on-failure"),
      Type.Literal("unless-stopped"),
    ]),
    maxRetries: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    backoff: Type.Optional(Backoff),
  },
  Strict,
);
export type RestartPolicy = Static<typeof RestartPolicy>;

export const Healthcheck = Type.Object(
  {
    test: StrList(64, 4096),
    intervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 86_400_000 })),
    retries: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    startPeriodMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000 })),
    onFailure: Type.Optional(
      Type.Union([Type.Literal("none"), Type.Literal("kill"), Type.Literal("restart"), Type.Literal("stop")]),
    ),
  },
  Strict,
);
export type Healthcheck = Static<typeof Healthcheck>;

export const Resources = Type.Object(
  {
    // 0 means "no limit"; a limit below 4 MiB cannot start any process and is refused.
    memoryBytes: Type.Optional(
      Type.Union([Type.Literal(0), Type.Integer({ minimum: 4 * 1024 * 1024, maximum: 2 ** 50 })]),
    ),
    cpus: Type.Optional(Type.Number({ minimum: 0, maximum: 1024 })),
    pidsLimit: Type.Optional(Type.Integer({ minimum: 0, maximum: 4_194_304 })),
  },
  Strict,
);
export type Resources = Static<typeof Resources>;

export const Mount = Type.Object(
  {
    type: Type.Union([Type.Literal("volume"), Type.Literal("bind"), Type.Literal("tmpfs")]),
    source: Type.Optional(Type.String({ maxLength: 4096 })),
    target: Type.String({ minLength: 1, maxLength: 4096 }),
    readOnly: Type.Optional(Type.Boolean()),
  },
  Strict,
);
export type Mount = Static<typeof Mount>;

export const PortMapping = Type.Object(
  {
    hostPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    containerPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    protocol: Type.Optional(Type.Union([Type.Literal("tcp"), Type.Literal("udp")])),
    /** The host address the port is published on; absent: every address of the host. */
    hostIp: Type.Optional(Type.String({ maxLength: 64 })),
  },
  Strict,
);
export type PortMapping = Static<typeof PortMapping>;

/** `bridge` (the default, as docker's): the node's bridge network; `none`: loopback only; `host`: the host's. */
export const Network = Type.Object(
  {
    mode: Type.Optional(Type.Union([Type.Literal("none"), Type.Literal("host"), Type.Literal("bridge")])),
    ip: Type.Optional(Type.String({ maxLength: 64 })),
    ports: Type.Optional(Type.Array(PortMapping, { maxItems: 256 })),
  },
  Strict,
);
export type Network = Static<typeof Network>;

/** The container's log cap (docs/API.md); unset fields take the daemon's --log-max-size/--log-max-files. */
export const LogOptions = Type.Object(
  {
    // Below a few conmon records (≤ 8 KiB each) a file would rotate on every write.
    maxSizeBytes: Type.Optional(Type.Integer({ minimum: 16 * 1024, maximum: 2 ** 40 })),
    maxFiles: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  },
  Strict,
);
export type LogOptions = Static<typeof LogOptions>;

export const ContainerSpec = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
    image: Type.String({ minLength: 1, maxLength: 512 }),
    entrypoint: Type.Optional(Type.Union([StrList(256, 65536), Type.Null()])),
    cmd: Type.Optional(Type.Union([StrList(4096, 131072), Type.Null()])),
    env: Type.Optional(StrList(4096, 32768)),
    workdir: Type.Optional(Type.String({ maxLength: 4096 })),
    user: Type.Optional(Type.String({ maxLength: 256 })),
    labels: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }))),
    annotations: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }))),
    restartPolicy: Type.Optional(RestartPolicy),
    autoRemove: Type.Optional(Type.Boolean()),
    healthcheck: Type.Optional(Type.Union([Healthcheck, Type.Null()])),
    resources: Type.Optional(Resources),
    mounts: Type.Optional(Type.Array(Mount, { maxItems: 128 })),
    network: Type.Optional(Network),
    hostname: Type.Optional(Type.String({ pattern: HOSTNAME_PATTERN })),
    stopSignal: Type.Optional(Type.String({ maxLength: 16 })),
    stopTimeoutSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
    node: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
    pod: Type.Optional(Type.Union([Type.String({ pattern: NAME_PATTERN }), Type.Null()])),
    log: Type.Optional(LogOptions),
    /** The main process gets a terminal (docker's -t): attach to it with the attach route. */
    tty: Type.Optional(Type.Boolean()),
    /** Its terminal takes input from attached clients (docker's -i); without it input is dropped. */
    stdin: Type.Optional(Type.Boolean()),
  },
  Strict,
);
export type ContainerSpec = Static<typeof ContainerSpec>;

/**
 * A volume mount without a source is anonymous: it gets a name of its container's own, and goes
 * away with the container. Users cannot name a volume with this prefix.
 */
export const ANON_VOLUME_PREFIX = "anon-";
export const anonVolumeName = (containerId: string, index: number) => `${ANON_VOLUME_PREFIX}${containerId.slice(0, 16)}-${index}`;
export const isAnonVolumeOf = (name: string, containerId: string) => name.startsWith(`${ANON_VOLUME_PREFIX}${containerId.slice(0, 16)}-`);
/** The volumes (by name, named and anonymous) a spec mounts, each once. */
export const volumesOf = (spec: ContainerSpec): string[] => [...new Set((spec.mounts ?? []).flatMap((m) => (m.type === "volume" && m.source ? [m.source] : [])))];

/** The namespaces a pod's members share; the net one always (a pod is one IP). */
export const PodNamespace = Type.Union([Type.Literal("net"), Type.Literal("ipc"), Type.Literal("uts")]);

/** A pod (API.md): pinned namespaces with one network attachment and one cgroup for its members. */
export const PodSpec = Type.Object(
  {
    name: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
    labels: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }))),
    annotations: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 4096 }))),
    share: Type.Optional(Type.Array(Type.String({ maxLength: 16 }), { minItems: 1, maxItems: 8 })),
    network: Type.Optional(Network),
    resources: Type.Optional(Resources),
    node: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
  },
  Strict,
);
export type PodSpec = Static<typeof PodSpec>;
export type PodNamespace = Static<typeof PodNamespace>;
