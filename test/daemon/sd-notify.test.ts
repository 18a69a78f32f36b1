import { renameSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unixPathAddress } from '../harness/address.js';
import { REPO_ROOT, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { runClient } from '../harness/run-client.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

/** A stand-in for systemd's notify socket: prints every datagram it receives, one per line. */
const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    print(repr(s.recv(4096).decode()), flush=True)
`;

describe('sd_notify (Type=notify)', () => {
  let dir: string;
  let receiver: LongRunning;
  let daemon: LongRunning;
  let address: string;
  const main = path.join(REPO_ROOT, 'dist/src/cli/ferrybus.js');

  beforeAll(async () => {
    dir = await makeTempDir('ferrybus-notify');
    receiver = startLongRunning(SYSTEM_PYTHON, ['-c', RECEIVER, path.join(dir, 'notify')]);
    await receiver.waitFor('bound');
    address = unixPathAddress(path.join(dir, 'bus'));
    daemon = startLongRunning(process.execPath, [main, 'daemon', `--address=${address}`], {
      env: { NOTIFY_SOCKET: path.join(dir, 'notify') },
    });
  });

  afterAll(async () => {
    await daemon?.stop();
    await receiver?.stop();
    await removeTempDir(dir);
  });

  it('reports READY=1 once serving, then RELOADING=1 and READY=1 around each handoff — also when the socket path is gone', async () => {
    await receiver.waitFor(/READY=1\\nSTATUS=serving .*generation 1/);
    // After switch-root the path no longer resolves from the daemon's root: the connected socket must still work.
    renameSync(path.join(dir, 'notify'), path.join(dir, 'notify.moved'));
    for (const generation of [2, 3]) {
      const r = await runClient(process.execPath, [main, 'handoff', '--address', address, '--json']);
      expect(r.exitCode, r.stderr).toBe(0);
      await receiver.waitFor(new RegExp(`READY=1\\\\nSTATUS=serving .*generation ${generation}`));
    }
    expect(receiver.stdout.match(/RELOADING=1/g)).toHaveLength(2);
    expect(daemon.stderr).not.toContain('notify-failed');
  });

  it('says once, as information, that the manager stopped reading (PID 1 became systemd-shutdown), and keeps handing off', async () => {
    // At poweroff systemd-shutdown replaces PID 1 and nobody reads the notify socket any more.
    await receiver.stop();
    for (const generation of [4, 5]) {
      const r = await runClient(process.execPath, [main, 'handoff', '--address', address, '--json']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ generation });
    }
    const gone = daemon.stderr.match(/^<(\d)>ferrybus\[\d+\]: notify-gone: .*$/gm) ?? [];
    expect(gone).toHaveLength(1);
    expect(gone[0]).toMatch(/^<6>.*not notifying any more error=(ECONNREFUSED|ENOTCONN)$/);
    expect(daemon.stderr).not.toContain('notify-failed');
  });
});
