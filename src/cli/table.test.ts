import { describe, expect, it } from 'vitest';
import { connectTargets } from './bus-client.js';
import { CliError, EXIT_USAGE } from './cli-error.js';
import { shortCommand } from './proc-info.js';
import { formatBytes, formatDuration, formatFields, formatTable, truncate } from './table.js';

describe('formatTable', () => {
  it('aligns columns under a header row, right-aligns numbers, leaves no trailing blanks', () => {
    const out = formatTable(['NAME', { header: 'PID', align: 'right' }, 'COMMAND'], [
      ['org.example.A', '7', 'sleep 1'],
      ['b', '12345', ''],
    ]);
    expect(out).toBe(
      'NAME             PID  COMMAND\n' +
      'org.example.A      7  sleep 1\n' +
      'b              12345\n',
    );
  });

  it('prints the header alone for an empty table', () => {
    expect(formatTable(['A', 'B'], [])).toBe('A  B\n');
  });
});

describe('formatFields', () => {
  it('starts every value in one column', () => {
    expect(formatFields([['pid', '1'], ['queued bytes', '0 B']])).toBe('pid           1\nqueued bytes  0 B\n');
  });
});

describe('formatBytes and formatDuration', () => {
  it.each([[0, '0 B'], [1023, '1023 B'], [1024, '1.0 KiB'], [1536, '1.5 KiB'], [127 * 1024 * 1024, '127.0 MiB'], [3 * 1024 ** 3, '3.0 GiB']])(
    '%d bytes → %s', (n, text) => expect(formatBytes(n)).toBe(text),
  );
  it.each([[0, '0s'], [59.9, '59s'], [61, '1m 1s'], [3600, '1h 0m 0s'], [90061, '1d 1h 1m']])(
    '%d s → %s', (s, text) => expect(formatDuration(s)).toBe(text),
  );
  it('marks a cut cell', () => {
    expect(truncate('abcdef', 4)).toBe('abc…');
    expect(truncate('abc', 4)).toBe('abc');
  });
});

describe('shortCommand', () => {
  it('shows the program and an interpreter\'s script by base name, arguments as they are', () => {
    expect(shortCommand(['/usr/bin/node', '/opt/ferrybus/dist/src/cli/ferrybus.js', 'monitor', '/x/y'])).toBe('node ferrybus.js monitor /x/y');
    expect(shortCommand(['/usr/bin/python3', '-m', 'x'])).toBe('python3 -m x');
    expect(shortCommand(['/usr/lib/systemd/systemd-logind'])).toBe('systemd-logind');
    expect(shortCommand(['busctl', '--address=unix:path=/run/x', 'list'])).toBe('busctl --address=unix:path=/run/x list');
  });
});

describe('connectTargets', () => {
  it('connects to unix paths and abstract names, ignoring guid=, in the order given', () => {
    expect(connectTargets('unix:path=/run/ferrybus/bus,guid=0123456789abcdef0123456789abcdef;unix:abstract=ferry')).toEqual([
      { path: '/run/ferrybus/bus', display: '/run/ferrybus/bus' },
      { path: '\0ferry', display: '@ferry' },
    ]);
  });

  it('skips entries a client cannot use and keeps the rest', () => {
    expect(connectTargets('tcp:host=x,port=1;unix:dir=/tmp;unix:path=/a')).toEqual([{ path: '/a', display: '/a' }]);
  });

  it('is a usage error when nothing is left, naming each reason', () => {
    const fail = () => connectTargets('unix:tmpdir=/tmp;tcp:host=x');
    expect(fail).toThrow(CliError);
    expect(fail).toThrow(/nothing to connect to \(unix:tmpdir is a listen-only address; .*tcp/);
    try {
      fail();
    } catch (err) {
      expect((err as CliError).exitCode).toBe(EXIT_USAGE);
    }
  });
});
