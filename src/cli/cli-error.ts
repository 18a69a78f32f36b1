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
