/**
 * One error base class for the whole daemon: every error carries a stable `code`
 * so logs, tests and the CLI can branch on it without parsing messages.
 */
export class FerryError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bytes on the wire that break the D-Bus specification. The peer that sent them is disconnected. */
export class WireError extends FerryError {}
