import { FerryError } from '../util/errors.js';

/** sysexits.h: a runtime failure is 1, a command used wrongly is EX_USAGE. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 64;

/**
 * A failure the CLI explains to the operator: the message is complete (what went wrong and
 * where it looked) and is printed after "ferrybus: " as it is.
 */
export class CliError extends FerryError {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
    code = exitCode === EXIT_USAGE ? 'Usage' : 'CliFailed',
  ) {
    super(code, message);
  }
}

/**
 * Exit status: 0 success, 1 a runtime failure (EXIT_FAILURE), 64 a usage error (EX_USAGE).
 * Every failure is one line on stderr that starts with "ferrybus: ".
 */
export function exitWithError(err: unknown): never {
  if (err instanceof CliError) {
    process.stderr.write(`ferrybus: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof FerryError) {
    process.stderr.write(`ferrybus: ${err.message}\n`);
    process.exit(err.code === 'BadFlag' ? EXIT_USAGE : EXIT_FAILURE);
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e.code === 'string' && typeof e.message === 'string') {
    process.stderr.write(`ferrybus: ${e.message}\n`);
    process.exit(EXIT_FAILURE);
  }
  throw err;
}
