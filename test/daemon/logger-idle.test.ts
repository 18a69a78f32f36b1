/**
 * winston is asked for by the first line logged once the bus serves and loaded when the bus is
 * idle (src/supervisor/logger.ts): loading it holds the event loop for tens of milliseconds,
 * which must not fall on clients that keep the bus busy — least of all right after a handoff,
 * when the clients that waited are being served. A bus that logs nothing never loads it.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { REPO_ROOT, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { runClient } from '../harness/run-client.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

/** Calls GetId back to back (no pause the bus could take for idleness) for argv[2] seconds. */
const CALLER = `
import dbus, sys, time
bus = dbus.bus.BusConnection(sys.argv[1])
print("calling", bus.get_unique_name(), flush=True)
end = time.monotonic() + float(sys.argv[2])
calls = 0
while time.monotonic() < end:
    bus.call_blocking("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetId", "", ())
    calls += 1
print("done", calls, flush=True)
`;

const WINSTON = /logger-winston: winston has taken over the log/;

describe('the logger', () => {
  let dir: string;
  let daemon: LongRunning;
  let address: string;
  const main = path.join(REPO_ROOT, 'dist/src/cli/ferrybus.js');

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-logger-idle');
    daemon = startLongRunning(process.execPath, [main, 'daemon', '--nofork', '--print-address=1', `--address=${unixPathAddress(path.join(dir, 'bus'))}`], {
      env: { FERRYBUS_LOG_LEVEL: 'debug' },
    });
    address = await waitForAddressLine(daemon);
  });

  afterAll(async () => {
    await daemon?.stop();
    await removeTempDir(dir);
  });

  it('loads winston only when a line asked for it', async () => {
    // Idle, nothing logged since it serves: a second of quiet sweeps, and no winston.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(daemon.stderr).not.toMatch(WINSTON);
    // A client's lines (debug) ask for it; the bus, idle again, loads it.
    const id = await runClient('dbus-send', [`--bus=${address}`, '--print-reply', '--dest=org.freedesktop.DBus', '/', 'org.freedesktop.DBus.GetId']);
    expect(id.exitCode, id.stderr).toBe(0);
    await daemon.waitFor(WINSTON, { stream: 'stderr' });
    expect(daemon.stderr).toMatch(/client-authenticated[^]*logger-winston/);
  });

  it('loads winston only once the bus is idle: not while a client keeps calling through a handoff', async () => {
    await daemon.waitFor(WINSTON, { stream: 'stderr' });
    const caller = startLongRunning(SYSTEM_PYTHON, ['-c', CALLER, address, '6']);
    try {
      const callerName = (await caller.waitFor(/^calling (\S+)$/m))[1]!;
      const handoff = await runClient(process.execPath, [main, 'handoff', '--address', address, '--json']);
      expect(handoff.exitCode, handoff.stderr).toBe(0);
      expect(JSON.parse(handoff.stdout).generation).toBe(2);
      // The handoff finished while the caller was still calling (else this test proves nothing).
      expect(caller.stdout).not.toMatch(/^done/m);
      const calls = Number((await caller.waitFor(/^done (\d+)$/m, { timeoutMs: 20_000 }))[1]);
      expect(calls).toBeGreaterThan(0);
      // The new image loads winston once the caller has left and the bus is idle; not before.
      const disconnected = `client-disconnected: client disconnected peer=${callerName}`;
      await daemon.waitFor(new RegExp(`${disconnected.replace(/[.]/g, '\\.')}[^]*${WINSTON.source}`), { stream: 'stderr', timeoutMs: 10_000 });
      const afterHandoff = daemon.stderr.slice(daemon.stderr.indexOf('handoff-complete'));
      expect(afterHandoff.indexOf(disconnected)).toBeGreaterThan(0);
      expect(afterHandoff.slice(0, afterHandoff.indexOf(disconnected))).not.toMatch(WINSTON);
      expect(daemon.stderr.match(new RegExp(WINSTON.source, 'g'))).toHaveLength(2);
    } finally {
      await caller.stop();
    }
  }, 60_000);
});
