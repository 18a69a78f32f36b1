// A bus that runs out of file descriptors (RLIMIT_NOFILE) cannot accept new clients: it must keep
// serving the clients it has, not spin on a listening socket that stays ready, and take the
// clients that waited in the backlog once fds are free again. The bus's soft limit is lowered
// for a moment with prlimit, as test/integration/fd-rules.test.ts does for MSG_CTRUNC.
// Runs against ferrybus (default), dbus-daemon and dbus-broker (FERRYBUS_TEST_BUS); only
// ferrybus's log lines are checked.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { steadyFdCount } from '../harness/fd-count.js';
import { DRIVER_CALL, FdRawClient } from '../harness/fd-raw-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const getBus = useBus();
const defer = useCleanup();

async function connect(): Promise<FdRawClient> {
  const client = await FdRawClient.connect(getBus().socketPath);
  defer(() => client.quit());
  return client;
}

async function stillWorks(client: FdRawClient): Promise<void> {
  const [id] = await client.call({ ...DRIVER_CALL, member: 'GetId' });
  expect(id).toMatch(/^[0-9a-f]{32}$/);
}

describe(`a bus out of fds (${process.env.FERRYBUS_TEST_BUS ?? 'ferrybus'})`, () => {
  it('keeps serving its clients, and accepts the client that waited once fds are free again', async () => {
    const bus = getBus();
    const bystander = await connect();
    const [soft, hard] = execFileSync('prlimit', ['--pid', String(bus.pid), '--nofile', '--raw', '--noheadings', '--output', 'SOFT,HARD'], { encoding: 'utf8' })
      .trim().split(/\s+/) as [string, string];
    // Below the fds open: accept4 fails with EMFILE (with a margin for an fd the bus holds only for a moment).
    execFileSync('prlimit', ['--pid', String(bus.pid), `--nofile=${(await steadyFdCount(bus.pid)) - 2}:${hard}`]);
    let restored = false;
    const restore = () => {
      if (restored) return;
      restored = true;
      execFileSync('prlimit', ['--pid', String(bus.pid), `--nofile=${soft}:${hard}`]);
    };
    defer(restore);
    // The kernel completes the newcomer's connect (the backlog); its SASL waits for the accept.
    const newcomer = FdRawClient.connect(bus.socketPath);
    newcomer.then((c) => defer(() => c.quit()), () => undefined);
    if (bus.kind === 'ferrybus') await bus.process.waitFor(/accept-paused: cannot accept clients for now: EMFILE/, { stream: 'stderr' });
    await stillWorks(bystander);
    await stillWorks(bystander);
    restore();
    await stillWorks(await newcomer);
    if (bus.kind === 'ferrybus') {
      await bus.process.waitFor(/accept-resumed: accepting clients again after \d+ ms without fds/, { stream: 'stderr' });
      // One line for the whole shortage, not one per retry.
      expect(bus.process.stderr.match(/accept-paused/g)).toHaveLength(1);
    }
    await stillWorks(bystander);
  });
});
