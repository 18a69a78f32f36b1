import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import yargs from 'yargs';
import { DAEMON_FLAGS, daemonArgs, flagValuesOf, quickDaemonFlags, type DaemonFlagValues } from './daemon-flags.js';

/** What the yargs program reads from the same flags (commands.ts declares them from the same table). */
function yargsValues(args: readonly string[]): DaemonFlagValues {
  let y = yargs([...args]).version(false).help(false).strict();
  for (const f of DAEMON_FLAGS) y = y.option(f.name, { type: f.value ? 'string' : 'boolean' });
  return flagValuesOf(y.parseSync() as Record<string, unknown>);
}

const asArgs = (values: DaemonFlagValues | undefined, args: readonly string[]) => {
  try {
    return values && daemonArgs(values, args);
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
};

describe('the daemon flags read without yargs', () => {
  it('reads the command lines launchers use', () => {
    const debian = ['--system', '--address=systemd:', '--nofork', '--nopidfile', '--systemd-activation', '--syslog-only'];
    expect(daemonArgs(quickDaemonFlags(debian)!, debian)).toMatchObject({
      system: true, address: 'systemd:', fork: false, noPidFile: true, systemdActivation: true, syslogOnly: true,
    });
    const harness = ['--config-file', '/tmp/x.conf', '--nofork', '--print-address=1', '--address=unix:path=/tmp/b'];
    expect(daemonArgs(quickDaemonFlags(harness)!, harness)).toMatchObject({ configFile: '/tmp/x.conf', printAddress: '1', address: 'unix:path=/tmp/b' });
    expect(daemonArgs(quickDaemonFlags(['--print-address'])!, [])).toMatchObject({ printAddress: true });
  });

  it.each([
    ['an unknown flag', ['--frobnicate']],
    ['help', ['--help']],
    ['a positional argument', ['extra']],
    ['a negated switch', ['--no-fork']],
    ['a switch with a value', ['--fork=yes']],
    ['a single dash', ['-h']],
    ['the end of flags', ['--']],
  ])('leaves %s to the yargs program', (_what, args) => {
    expect(quickDaemonFlags(args)).toBeUndefined();
  });

  it('refuses a value flag given twice, as the yargs program does', () => {
    const args = ['--address=unix:path=/a', '--address', 'unix:path=/b'];
    expect(asArgs(quickDaemonFlags(args), args)).toBe('refused: --address given more than once ("unix:path=/a" and "unix:path=/b")');
    expect(asArgs(yargsValues(args), args)).toBe('refused: --address given more than once ("unix:path=/a" and "unix:path=/b")');
  });

  it('reads every command line it accepts exactly as yargs reads it', () => {
    const word = fc.constantFrom('unix:path=/run/x', '/etc/bus.conf', '3', '', 'systemd:', 'a=b');
    const token = fc.oneof(
      fc.constantFrom(...DAEMON_FLAGS.filter((f) => !f.value).map((f) => [`--${f.name}`])),
      fc.tuple(fc.constantFrom(...DAEMON_FLAGS.filter((f) => f.value).map((f) => f.name)), word, fc.boolean())
        .map(([name, value, joined]) => (joined ? [`--${name}=${value}`] : value === '' ? [`--${name}`] : [`--${name}`, value])),
    );
    fc.assert(fc.property(fc.array(token, { maxLength: 8 }), (tokens) => {
      const args = tokens.flat();
      const quick = quickDaemonFlags(args);
      expect(quick, args.join(' ')).toBeDefined();
      expect(asArgs(quick, args), args.join(' ')).toEqual(asArgs(yargsValues(args), args));
    }), { numRuns: 300 });
  });
});
