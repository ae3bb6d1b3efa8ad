// The CLI's one error type, in a file of its own: the NATS part of the CLI is bundled into a file
// of its own (scripts/bundle-cli.mjs) and has its own copy of this class.

/** An error as the daemon (or the wire) reports it: printed as `berth: <code>: <message>`. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }

  /** `instanceof` by shape, so that a CliError from the other bundle's copy is one too. */
  static override [Symbol.hasInstance](x: unknown): boolean {
    return x instanceof Error && x.name === "CliError" && typeof (x as { code?: unknown }).code === "string";
  }
}
