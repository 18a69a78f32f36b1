/**
 * The environment a handoff execs the new image with.
 *
 * With NODE_EXTRA_CA_CERTS set, node parses its root certificates and the named file before it
 * runs any JavaScript: 40 ms of every start on a 2-core machine, in the middle of the pause.
 * A bus never speaks TLS, so the new image is exec'd without it; the value travels under
 * another name and is put back before anything starts a program, for the services the bus
 * starts (they inherit its environment) and for the image after the next handoff.
 */
const HELD: readonly string[] = ['NODE_EXTRA_CA_CERTS'];
const HOLD_PREFIX = 'FERRYBUS_HELD_';

/** `env` as execve takes it, with the held variables renamed. */
export function execEnvironment(env: NodeJS.ProcessEnv): string[] {
  return Object.entries(env).map(([k, v]) => `${HELD.includes(k) ? HOLD_PREFIX + k : k}=${v ?? ''}`);
}

/** Puts the held variables back under their names (in the new image, before anything spawns). */
export function restoreHeldEnvironment(env: NodeJS.ProcessEnv): void {
  for (const name of HELD) {
    const held = env[HOLD_PREFIX + name];
    if (held === undefined) continue;
    env[name] = held;
    delete env[HOLD_PREFIX + name];
  }
}
