import { BusPolicy, PolicyCompileError, type PolicySource } from '../bus/policy.js';
import type { Credentials } from '../bus/peer.js';
import { processCommand } from '../cli/proc-info.js';
import type { Logger } from './logger.js';
import { userDatabase } from './user-database.js';

/**
 * Compiles the config's <policy> blocks for the bus. A policy that cannot be compiled (a
 * corrupt handoff document) fails closed: nobody but the bus's own user may connect, and no
 * rule allows anything, rather than a bus that is suddenly open.
 */
export function compilePolicy(policies: readonly PolicySource[] | undefined, log: Logger): BusPolicy | undefined {
  if (policies === undefined) return undefined;
  const busUid = process.getuid!();
  try {
    const policy = BusPolicy.compile(policies, userDatabase(), busUid);
    for (const warning of policy.warnings) log.warning('config-policy', warning);
    return policy;
  } catch (err) {
    const reason = err instanceof PolicyCompileError ? err.message : String(err);
    log.error('policy-invalid', 'the policy cannot be compiled; denying everything until a valid config is loaded', { reason });
    return BusPolicy.compile([], userDatabase(), busUid);
  }
}

/** dbus-daemon's loginfo for a connection in an AccessDenied text: uid, pid and command. */
export function describeCredentials(credentials: Credentials): string {
  const command = processCommand(credentials.pid).command;
  const label = credentials.securityLabel ? ` label="${credentials.securityLabel}"` : '';
  return `uid=${credentials.uid} pid=${credentials.pid} comm="${command ?? ''}"${label}`;
}
