import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { REPO_ROOT } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { runClient } from '../harness/run-client.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

describe('node flags of the daemon', () => {
  let dir: string;
  let daemon: LongRunning;
  let address: string;
  const main = path.join(REPO_ROOT, 'dist/src/cli/ferrybus.js');
  const cmdline = () => readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8').split('\0');

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-flags');
    daemon = startLongRunning(process.execPath, [
      '--no-concurrent-recompilation', main, 'daemon', '--print-address=1', `--address=${unixPathAddress(path.join(dir, 'bus'))}`,
    ]);
    address = await waitForAddressLine(daemon);
  });

  afterAll(async () => {
    await daemon?.stop();
    await removeTempDir(dir);
  });

  it('carry over to the handed-off generation (the unit keeps the optimizing compiler on the main thread with one)', async () => {
    const r = await runClient(process.execPath, [main, 'handoff', '--address', address, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).generation).toBe(2);
    const argv = cmdline();
    expect(argv[0]).toBe('@ferrybus');
    expect(argv[1]).toBe('--no-concurrent-recompilation');
    expect(argv[2]).toBe(main);
  });
});
