/**
 * Installed before anything else is loaded, in every image.
 *
 * SIGUSR1: Node's own handler opens the inspector (a debugger on 127.0.0.1:9229) —
 * for a root daemon, code execution for any local user. A JavaScript listener
 * replaces that handler, so one is installed as early as the entry module allows;
 * the signal is then only logged. (Node ≥ 22.14 can also refuse it with --disable-sigusr1.)
 *
 * SIGUSR2: the handoff request for when the bus itself cannot be reached. One
 * that arrives while this image is still starting is remembered, not lost.
 */
let handoffRequested = false;
let onHandoffSignal: (() => void) | undefined;

process.on('SIGUSR1', () => {
  process.stderr.write(`<4>ferrybus[${process.pid}]: sigusr1-ignored: SIGUSR1 is ignored (use SIGUSR2 to ask for a handoff)\n`);
});
process.on('SIGUSR2', () => {
  if (onHandoffSignal) onHandoffSignal();
  else handoffRequested = true;
});

/** Routes SIGUSR2 to `handler` from now on, delivering one that arrived during start-up. */
export function handleHandoffSignal(handler: () => void): void {
  onHandoffSignal = handler;
  if (handoffRequested) {
    handoffRequested = false;
    handler();
  }
}
