// Every error a client can see, in one place. The code is the contract (API.md); the message is
// for people.

export const ErrorCode = {
  /** The command's body or a field of it is malformed, out of range, or not allowed. */
  InvalidArgument: "InvalidArgument",
  /** The ref names no container, image or checkpoint. */
  NotFound: "NotFound",
  /** A name (or id) that must be unique is taken. */
  AlreadyExists: "AlreadyExists",
  /** The transition is not allowed from the current state, or a concurrent change won. */
  Conflict: "Conflict",
  /** The event store cannot be reached, or the daemon is still restoring. */
  Unavailable: "Unavailable",
  /** The intent was recorded but its outcome was not seen in time. */
  Timeout: "Timeout",
  /** runc, conmon, CRIU, skopeo or umoci failed; the message carries the tool's own words. */
  RuntimeError: "RuntimeError",
  /** A bug: anything that should not happen. */
  Internal: "Internal",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class BerthError extends Error {
  override name = "BerthError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export const invalid = (msg: string) => new BerthError(ErrorCode.InvalidArgument, msg);
export const notFound = (msg: string) => new BerthError(ErrorCode.NotFound, msg);
export const conflict = (msg: string) => new BerthError(ErrorCode.Conflict, msg);
export const alreadyExists = (msg: string) => new BerthError(ErrorCode.AlreadyExists, msg);
export const unavailable = (msg: string, cause?: unknown) =>
  new BerthError(ErrorCode.Unavailable, msg, { cause });

/** A host tool failed. `stderr` is the tool's own words, kept verbatim for the reply. */
export class RuntimeFailure extends BerthError {
  override name = "RuntimeFailure";
  constructor(
    readonly tool: string,
    readonly args: readonly string[],
    readonly stderr: string,
    readonly exitCode: number | undefined,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.RuntimeError, `${tool} ${args[0] ?? ""} failed${exitCode !== undefined ? ` (exit ${exitCode})` : ""}: ${stderr.trim() || "no output"}`, options);
  }
}

/** The appended event's expected subject sequence was stale: someone else wrote first. */
export class VersionConflict extends BerthError {
  override name = "VersionConflict";
  constructor(subject: string, expected: number, options?: { cause?: unknown }) {
    super(ErrorCode.Conflict, `concurrent modification of ${subject} (expected version ${expected})`, options);
  }
}

export function toBerthError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const e = err as Error;
  return new BerthError(ErrorCode.Internal, e?.message ?? String(err), { cause: err });
}
