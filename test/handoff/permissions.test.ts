// The handoff document holds every client's queued bytes: only the bus's own uid may read it or
// put one where the bus looks. Run with real non-root uids made by the test set-up.
import { chmodSync, chownSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from '../cli/support/cli.js';
import { unixPathAddress } from '../harness/address.js';
import { startLongRunning, type LongRunning } from '../harness/long-running.js';
import { describeResult, runClient } from '../harness/run-client.js';
import { waitForAddressLine } from '../harness/running-bus.js';
import { startBus } from '../harness/start-bus.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';
import { asUser, ensureTestUser, isRoot, type TestUser } from '../harness/test-users.js';

const as = (user: TestUser, args: string[], env: NodeJS.ProcessEnv = {}) =>
  runClient(asUser(user)[0]!, [...asUser(user).slice(1), process.execPath, CLI, ...args], { env: { PATH: process.env.PATH, ...env }, timeoutMs: 30_000 });

describe.skipIf(!isRoot)('handoff documents and other users', () => {
  let alice: TestUser;
  let bob: TestUser;
  let dir: string;

  beforeAll(async () => {
    alice = ensureTestUser('fbtest-alice');
    bob = ensureTestUser('fbtest-bob');
    dir = await makeTempDir('ferrybus-handoff-perms');
    chmodSync(dir, 0o755);
  });
  afterAll(() => removeTempDir(dir));

  it("a root bus's handoff directory is 0700 root: another user can neither list, read nor plant a document", async () => {
    const bus = await startBus('ferrybus');
    try {
      const r = await runClient(process.execPath, [CLI, 'handoff', '--address', bus.address], { timeoutMs: 30_000 });
      expect(r.exitCode, describeResult(r)).toBe(0);
      const docs = '/run/ferrybus/handoff';
      const st = statSync(docs);
      expect(st.uid).toBe(0);
      expect(st.mode & 0o777).toBe(0o700);
      const list = await runClient('/usr/bin/setpriv', [...asUser(bob).slice(1), 'ls', docs]);
      expect(list.exitCode).not.toBe(0);
      expect(list.stderr).toMatch(/Permission denied/);
      const plant = await runClient('/usr/bin/setpriv', [...asUser(bob).slice(1), 'touch', path.join(docs, 'generation-9-pid-1.json')]);
      expect(plant.exitCode).not.toBe(0);
      expect(plant.stderr).toMatch(/Permission denied/);
    } finally {
      await bus.stop();
    }
  });

  it("a user's bus refuses to write its document under a directory another user controls, and keeps serving", async () => {
    // Alice made the runtime directory Bob's bus would use, and lets everyone write in it.
    const planted = path.join(dir, 'planted-runtime');
    mkdirSync(planted, { mode: 0o777 });
    chmodSync(planted, 0o777);
    chownSync(planted, alice.uid, alice.gid);
    const bobs = path.join(dir, 'bob');
    mkdirSync(bobs, { mode: 0o700 });
    chownSync(bobs, bob.uid, bob.gid);
    const socketPath = path.join(bobs, 'bus');
    const address = unixPathAddress(socketPath);
    const argv = [...asUser(bob), process.execPath, CLI, 'daemon', '--nofork', '--print-address=1', `--address=${address}`];
    const daemon: LongRunning = startLongRunning(argv[0]!, argv.slice(1), { env: { PATH: process.env.PATH, XDG_RUNTIME_DIR: planted } });
    try {
      await waitForAddressLine(daemon);
      const handoff = await as(bob, ['handoff', '--address', address], { XDG_RUNTIME_DIR: planted });
      expect(handoff.exitCode, describeResult(handoff)).toBe(1);
      expect(handoff.stderr).toMatch(new RegExp(`${planted}(/ferrybus)? \\(above .*\\) can be changed by another user \\(owner uid ${alice.uid}, mode 777\\)`));
      // Nothing of Bob's bus was written where Alice can read it.
      const written = readdirSync(planted, { recursive: true }).filter((f) => String(f).endsWith('.json'));
      expect(written).toEqual([]);
      const status = await as(bob, ['status', '--address', address, '--json']);
      expect(status.exitCode, describeResult(status)).toBe(0);
      expect(JSON.parse(status.stdout)).toMatchObject({ generation: 1 });
    } finally {
      await daemon.stop();
    }
  });
});
