import { execa } from 'execa';

export interface ClientResult {
  command: string;
  stdout: string;
  stderr: string;
  /** undefined when the client was killed by a signal (e.g. on timeout). */
  exitCode: number | undefined;
  timedOut: boolean;
}

export interface ClientOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  input?: string;
}

/**
 * Runs a client command to completion and captures what a user would see. Never throws on a
 * non-zero exit: error cases are part of what the tests check.
 */
export async function runClient(file: string, args: readonly string[], options: ClientOptions = {}): Promise<ClientResult> {
  const result = await execa(file, args, {
    reject: false,
    timeout: options.timeoutMs ?? 10_000,
    env: options.env,
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : undefined,
    stripFinalNewline: false,
  });
  return {
    command: [file, ...args].join(' '),
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    exitCode: result.exitCode,
    timedOut: result.timedOut,
  };
}

/** Describes a result for assertion messages. */
export function describeResult(r: ClientResult): string {
  return `${r.command}\nexit=${r.exitCode} timedOut=${r.timedOut}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}
