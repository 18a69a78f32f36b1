/**
 * Every process the bench starts gets the environment a deployed bus has: the units
 * (systemd/ferrybus.service, the dracut module's) set none of node's own variables, and a shell
 * may. One of them decides start-up: with NODE_EXTRA_CA_CERTS set, node parses its built-in root
 * certificates and the named file before running anything (measured here: `node -e 0` 70 ms with
 * it, 27 ms without). A bus never speaks TLS; the cost would inflate both sides of the start-up
 * and handoff ratios, `node -e 0` and the bus alike, and flatter the ratio.
 */
const NODE_START_VARIABLES = ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS', 'NODE_ICU_DATA', 'NODE_REPL_EXTERNAL_MODULE', 'NODE_V8_COVERAGE', 'NODE_COMPILE_CACHE'];

/** Removes node's start-up variables from this process's environment; returns the names removed. */
export function useDeployedEnvironment(env: NodeJS.ProcessEnv = process.env): string[] {
  const removed = NODE_START_VARIABLES.filter((name) => env[name] !== undefined);
  for (const name of removed) delete env[name];
  return removed;
}
