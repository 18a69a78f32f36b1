// systemd/ferrybus-roots finds the daemon in the shutdown root, where PID 1 is systemd-shutdown
// but the old /run (with /run/systemd/system) is still mounted. It must not ask systemctl there:
// systemctl fell back to the system bus — ferrybus itself — and waited 25 s for systemd to be
// activated, in the middle of poweroff.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/fixtures.js';
import { describeResult, runClient } from '../harness/run-client.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

const isRoot = process.getuid?.() === 0;
const SCRIPT = path.join(REPO_ROOT, 'systemd/ferrybus-roots');
let dir: string;

beforeAll(async () => {
  dir = await makeTempDir('ferrybus-roots-script');
});
afterAll(async () => {
  if (dir) await removeTempDir(dir);
});

// A new mount and PID namespace stands for the shutdown root: PID 1 is not systemd, /run holds
// systemd/system, a systemctl on PATH notes that it was asked, and a process named @ferrybus runs.
describe.runIf(isRoot)('ferrybus-roots pid in the shutdown root', () => {
  it('finds the daemon by its argv[0] without asking systemctl', async () => {
    const bin = path.join(dir, 'bin');
    mkdirSync(bin);
    const asked = path.join(dir, 'systemctl-asked');
    writeFileSync(path.join(bin, 'systemctl'), `#!/bin/sh\necho "$@" >> ${asked}\necho 4242\n`);
    chmodSync(path.join(bin, 'systemctl'), 0o755);
    const inside = [
      'set -e',
      'mount -t tmpfs run-here /run',
      'mkdir -p /run/systemd/system',
      '(exec -a @ferrybus sleep 30) & daemon=$!',
      'sleep 0.2',
      `found=$(PATH=${bin}:$PATH sh ${SCRIPT} pid)`,
      'echo "daemon=$daemon found=$found"',
      'kill $daemon',
    ].join('\n');
    const r = await runClient('unshare', ['--mount', '--pid', '--fork', '--mount-proc', 'bash', '-c', inside], { timeoutMs: 20_000 });
    expect(r.exitCode, describeResult(r)).toBe(0);
    const m = /daemon=(\d+) found=(\d+)/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![2]).toBe(m![1]);
    expect(existsSync(asked) ? readFileSync(asked, 'utf8') : '').toBe('');
  });
});
