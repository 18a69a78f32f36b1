import { describe, expect, it } from 'vitest';
import { runOn, startOn } from '../harness/clients.js';
import { fixturePath, SYSTEM_PYTHON } from '../harness/fixtures.js';
import { ECHO_INTERFACE, ECHO_PATH, startEchoService } from '../harness/python-clients.js';
import { describeResult } from '../harness/run-client.js';
import { useBus, useCleanup } from '../harness/use-bus.js';

const SERVICE = 'org.ferrybus.Test.Monitored';
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('dbus-monitor (BecomeMonitor) on the test bus', () => {
  const bus = useBus();
  const defer = useCleanup();

  it('sees a method call between two other clients and the reply to it', async () => {
    const svc = await startEchoService(bus(), defer, SERVICE);
    const monitor = startOn(bus(), defer, 'dbus-monitor', ['--address', bus().address]);
    // After BecomeMonitor the bus takes the monitor's unique name away: NameLost is the last
    // thing it sees about itself, so the monitor is in place once that is printed.
    const own = await monitor.waitFor(/^signal .* member=NameLost\n\s+string "(:\d+\.\d+)"\n/m);
    const from = monitor.mark();

    const client = await runOn(bus(), SYSTEM_PYTHON, [fixturePath('echo-client.py'), '--address', bus().address, '--name', SERVICE, '--text', 'watched']);
    expect(client.stdout, describeResult(client)).toBe('reply: watched\n');

    const call = await monitor.waitFor(
      new RegExp(
        // python3-dbus resolves the name first (GetNameOwner) and calls the unique name.
        `^method call time=\\S+ sender=(:\\d+\\.\\d+) -> destination=(?:${esc(SERVICE)}|${esc(svc.uniqueName)}) serial=(\\d+) ` +
          `path=${esc(ECHO_PATH)}; interface=${esc(ECHO_INTERFACE)}; member=Echo\\n\\s+string "watched"\\n`,
        'm',
      ),
      { from },
    );
    const [, caller, serial] = call;
    expect(caller).not.toBe(own[1]);
    expect(caller).not.toBe(svc.uniqueName);
    await monitor.waitFor(
      new RegExp(
        `^method return time=\\S+ sender=${esc(svc.uniqueName)} -> destination=${esc(caller!)} serial=\\d+ reply_serial=${serial}\\n\\s+string "watched"\\n`,
        'm',
      ),
      { from },
    );
  });
});
