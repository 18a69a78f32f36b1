import { describe, expect, it } from 'vitest';
import { describeResult } from '../harness/run-client.js';
import { ferrybus } from './support/cli.js';

const OPERATOR_COMMANDS = ['status', 'names', 'connections', 'queue', 'users', 'monitor', 'handoff', 'inspect'];

describe('ferrybus usage', () => {
  it('--help lists every operator command and the exit statuses', async () => {
    const r = await ferrybus(['--help']);
    expect(r.exitCode, describeResult(r)).toBe(0);
    for (const c of OPERATOR_COMMANDS) expect(r.stdout).toMatch(new RegExp(`^  ferrybus ${c}\\b`, 'm'));
    expect(r.stdout).toMatch(/Exit status: 0 on success, 1 when something failed at run time, 64 for a usage\s+error\./);
  });

  it.each(['status', 'names', 'connections', 'queue', 'users', 'monitor'])('`ferrybus %s --help` offers --address (naming the default: quick-start bus, then system bus), --json and --timeout', async (c) => {
    const r = await ferrybus([c, '--help']);
    expect(r.exitCode, describeResult(r)).toBe(0);
    expect(r.stdout).toMatch(/--address\s+the bus to talk to \(default:\s+unix:path=\S+;unix:path=\S+\)/);
    expect(r.stdout).toContain('--json');
    expect(r.stdout).toContain('--timeout');
  });

  it('completes command names and a command\'s flags for the shell', async () => {
    const commands = await ferrybus(['--get-yargs-completions', 'ferrybus', '']);
    expect(commands.exitCode, describeResult(commands)).toBe(0);
    for (const c of OPERATOR_COMMANDS) expect(commands.stdout.split('\n')).toContain(c);
    const flags = await ferrybus(['--get-yargs-completions', 'ferrybus', 'queue', '--']);
    expect(flags.stdout.split('\n')).toEqual(expect.arrayContaining(['--address', '--json', '--timeout', '--all']));
    const script = await ferrybus(['completion']);
    expect(script.stdout).toContain('###-begin-ferrybus-completions-###');
  });
});
