// One TypeBox schema per command body: the TypeScript type, the validator and the documentation.
// Every body may carry `meta` and `timeoutMs`; unknown fields are rejected everywhere.
import { Type, type Static, type TObject, type TProperties } from "@sinclair/typebox";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { ContainerSpec, Healthcheck, NAME_PATTERN, PodSpec, Resources, RestartPolicy } from "../shared/spec.js";
import { invalid } from "../shared/errors.js";

const Strict = { additionalProperties: false } as const;

export const Meta = Type.Object(
  {
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    requestId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    correlationId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  },
  Strict,
);

const common = {
  meta: Type.Optional(Meta),
  timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
};

const Ref = Type.String({ minLength: 1, maxLength: 128, description: "full id, unique id prefix (≥ 4), or name" });

const body = <P extends TProperties>(props: P) => Type.Object({ ...props, ...common }, Strict);

/** The spec plus the common fields, for create and run. */
export const CreateBody = Type.Object({ ...ContainerSpec.properties, ...common }, Strict);
export const RefBody = body({ id: Ref });
export const StopBody = body({ id: Ref, timeoutSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })) });
export const KillBody = body({
  id: Ref,
  signal: Type.Optional(Type.Union([Type.String({ minLength: 1, maxLength: 16 }), Type.Integer({ minimum: 1, maximum: 64 })])),
});
export const UpdateBody = body({
  id: Ref,
  restartPolicy: Type.Optional(RestartPolicy),
  resources: Type.Optional(Resources),
  healthcheck: Type.Optional(Type.Union([Healthcheck, Type.Null()])),
  annotations: Type.Optional(Type.Record(Type.String({ maxLength: 256 }), Type.Union([Type.String({ maxLength: 4096 }), Type.Null()]), { maxProperties: 256 })),
});
export const RemoveBody = body({ id: Ref, force: Type.Optional(Type.Boolean()) });
const S = ContainerSpec.properties;
export const UpgradeBody = body({
  id: Ref,
  image: S.image,
  entrypoint: S.entrypoint,
  cmd: S.cmd,
  env: S.env,
  labels: S.labels,
  resources: Type.Optional(Resources),
  healthGateSec: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600, description: "how long the new revision must stay up and not turn unhealthy; default: the healthcheck's start period + interval × retries + timeout, else 3" })),
});
export const CheckpointBody = body({
  id: Ref,
  leaveRunning: Type.Optional(Type.Boolean()),
  tcpEstablished: Type.Optional(Type.Boolean()),
  fileLocks: Type.Optional(Type.Boolean()),
  preDump: Type.Optional(Type.Boolean()),
});
const CheckpointRef = Type.String({ minLength: 4, maxLength: 64, pattern: "^[0-9a-f]+$", description: "checkpoint id, or a unique prefix of it (≥ 4)" });
export const RestoreBody = body({
  checkpointId: CheckpointRef,
  name: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
});
export const CheckpointRemoveBody = body({ checkpointId: CheckpointRef });
export const MigrateBody = body({
  id: Ref,
  targetNode: Type.String({ pattern: NAME_PATTERN, maxLength: 128, description: "the node to move it to" }),
  preCopy: Type.Optional(Type.Boolean({ description: "pre-dump its memory while it runs first, so the final freeze is shorter" })),
});
export const PodMigrateBody = MigrateBody;
export const PodCheckpointBody = body({
  id: Ref,
  leaveRunning: Type.Optional(Type.Boolean()),
  tcpEstablished: Type.Optional(Type.Boolean()),
  fileLocks: Type.Optional(Type.Boolean()),
});
export const PodRestoreBody = body({
  checkpointId: CheckpointRef,
  name: Type.Optional(Type.String({ pattern: NAME_PATTERN, description: "restore into a new pod of this name (new IP; members named <name>-<member>)" })),
});
export const ImageImportBody = body({
  source: Type.String({ minLength: 1, maxLength: 4096 }),
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: "^[a-zA-Z0-9][a-zA-Z0-9_.:/-]*$" })),
});
export const ImageRemoveBody = body({ name: Type.String({ minLength: 1, maxLength: 256 }) });
/** Linux refuses a single argument or env entry over 128 KiB (MAX_ARG_STRLEN); the body limit bounds the rest. */
const Arg = Type.String({ maxLength: 131_072 });
export const ExecFields = {
  id: Ref,
  cmd: Type.Array(Arg, { minItems: 1, maxItems: 4096, description: "argv; no shell unless you name one" }),
  env: Type.Optional(Type.Array(Type.String({ minLength: 2, maxLength: 131_072, pattern: "^[^=]+=" }), { maxItems: 1024 })),
  user: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: "user[:group], names or numeric ids" })),
  workdir: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, pattern: "^/" })),
  timeoutSec: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
};
export const ExecBody = body(ExecFields);

export const PodCreateBody = Type.Object({ ...PodSpec.properties, ...common }, Strict);
export type PodCreateBody = Static<typeof PodCreateBody>;

export type CreateBody = Static<typeof CreateBody>;
export type StopBody = Static<typeof StopBody>;
export type KillBody = Static<typeof KillBody>;
export type UpdateBody = Static<typeof UpdateBody>;
export type RemoveBody = Static<typeof RemoveBody>;
export type UpgradeBody = Static<typeof UpgradeBody>;
export type RefBody = Static<typeof RefBody>;
export type ImageImportBody = Static<typeof ImageImportBody>;
export type ImageRemoveBody = Static<typeof ImageRemoveBody>;
export type ExecBody = Static<typeof ExecBody>;

const ajv = new Ajv({ allErrors: false, strict: false, coerceTypes: false, useDefaults: false });

/**
 * A validator that throws InvalidArgument naming the offending field. Compiled on first use: the
 * daemon builds its validators before recovery, when no command can be served yet, and
 * compiling them all there (≈ 200 ms, CreateBody most) would only delay readiness.
 */
export function validator<T extends TObject>(schema: T): (v: unknown) => Static<T> {
  let check: ValidateFunction | null = null;
  return (v: unknown) => {
    check ??= ajv.compile(schema);
    if (!check(v)) throw invalid(describeError(check.errors?.[0]));
    return v as Static<T>;
  };
}

function describeError(e: ErrorObject | undefined): string {
  if (!e) return "invalid body";
  const where = e.instancePath ? e.instancePath.slice(1).replaceAll("/", ".") : "body";
  switch (e.keyword) {
    case "additionalProperties":
      return `unknown field '${where === "body" ? "" : where + "."}${(e.params as { additionalProperty: string }).additionalProperty}'`;
    case "required":
      return `missing field '${where === "body" ? "" : where + "."}${(e.params as { missingProperty: string }).missingProperty}'`;
    case "pattern":
      return `${where} has an invalid format`;
    default:
      return `${where} ${e.message ?? "is invalid"}`;
  }
}
