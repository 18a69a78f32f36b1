// A fast subset of libdbus's installed tests (scripts/installed-tests.mjs): every case pinned
// here passed on dbus-daemon and on ferrybus in test/installed-tests/results/latest.json (run
// as root) or, for PINNED_AS_USER, in results/as-user.json (run as another user with --user:
// these cases skip themselves as root), and must keep passing on ferrybus wherever it passes on
// dbus-daemon. Skipped without the Debian package dbus-tests. The full comparison (all cases,
// dbus-broker too) is `npm run installed-tests`.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../harness/fixtures.js';
import { ensureTestUser, isRoot } from '../harness/test-users.js';
import { makeTempDir, removeTempDir } from '../harness/temp-dir.js';

const TESTS_DIR = '/usr/lib/dbus-1.0/installed-tests/dbus';

const PINNED: Array<[string, string]> = [
  ["test-dbus-daemon", "/creds"],
  ["test-dbus-daemon", "/processid"],
  ["test-dbus-daemon", "/unix-runtime-is-default"],
  ["test-dbus-daemon", "/echo/session"],
  ["test-dbus-daemon", "/echo/limited"],
  ["test-dbus-daemon", "/no-reply/disconnect"],
  ["test-dbus-daemon", "/no-reply/timeout"],
  ["test-dbus-daemon", "/canonical-path/uae"],
  ["test-dbus-daemon", "/limits/max-replies-per-connection"],
  ["test-dbus-daemon", "/limits/max-connections-per-user"],
  ["test-dbus-daemon", "/limits/max-completed-connections"],
  ["test-dbus-daemon", "/policy/count-fds"],
  ["test-dbus-daemon", "/limits/max-match-rules-per-connection"],
  ["test-dbus-daemon", "/limits/max-names-per-connection"],
  ["test-dbus-daemon", "/match/remove/fails"],
  ["test-dbus-daemon", "/match/remove/succeeds"],
  ["test-dbus-daemon", "/peer/ping"],
  ["test-dbus-daemon", "/peer/get-machine-id"],
  ["test-dbus-daemon", "/properties/get-invalid-iface"],
  ["test-dbus-daemon", "/properties/get-invalid-path"],
  ["test-dbus-daemon", "/properties/get-invalid"],
  ["test-dbus-daemon", "/properties/get-all-invalid-iface"],
  ["test-dbus-daemon", "/properties/get-all-invalid-path"],
  ["test-dbus-daemon", "/properties/set-invalid-iface"],
  ["test-dbus-daemon", "/properties/set-invalid-path"],
  ["test-dbus-daemon", "/properties/set-invalid"],
  ["test-dbus-daemon", "/properties/set"],
  ["test-dbus-daemon", "/properties/interfaces"],
  ["test-dbus-daemon", "/system-policy/send-destination/prefix"],
  ["test-dbus-daemon-eavesdrop", "/eavedrop/match_keyword/broadcast"],
  ["test-dbus-daemon-eavesdrop", "/eavedrop/match_keyword/unicast_to_receiver"],
  ["test-dbus-daemon-eavesdrop", "/eavedrop/match_keyword/unicast_to_sender"],
  ["test-monitor", "/monitor/invalid"],
  ["test-monitor", "/monitor/become"],
  ["test-monitor", "/monitor/broadcast"],
  ["test-monitor", "/monitor/unicast-signal"],
  ["test-monitor", "/monitor/method-call"],
  ["test-monitor", "/monitor/forbidden-broadcast"],
  ["test-monitor", "/monitor/forbidden"],
  ["test-monitor", "/monitor/forbidden-method"],
  ["test-monitor", "/monitor/forbidden-reply"],
  ["test-monitor", "/monitor/dbus-daemon"],
  ["test-monitor", "/monitor/selective"],
  ["test-monitor", "/monitor/well-known-destination"],
  ["test-monitor", "/monitor/unique-destination"],
  ["test-monitor", "/monitor/wildcard"],
  ["test-monitor", "/monitor/no-rule"],
  ["test-monitor", "/monitor/eavesdrop"],
  ["test-monitor", "/monitor/no-eavesdrop"],
  ["test-header-fields", "/message/weird-header-field/none"],
  ["test-header-fields", "/message/weird-header-field/append"],
  ["test-header-fields", "/message/weird-header-field/change"],
  ["test-header-fields", "/message/weird-header-field/prepend"],
  ["test-header-fields", "/message/weird-header-field/multi"],
  ["test-containers", "/containers/get-supported-arguments"],
  ["test-containers", "/containers/invalid-metadata-getters"],
  ["test-uid-permissions", "/uid-permissions/uae/other"],
  ["test-uid-permissions", "/uid-permissions/monitor/root"],
  ["test-uid-permissions", "/uid-permissions/monitor/messagebus"],
  ["test-uid-permissions", "/uid-permissions/monitor/other"],
  ["test-dbus-daemon-fork.sh", "(script)"],
  // Service activation (Exec= and systemd's ActivationRequest), and what depends on it.
  ["test-dbus-daemon", "/properties/features"],
  ["test-dbus-daemon", "/properties/get-all"],
  ["test-dbus-daemon", "/activation/forking"],
  ["test-dbus-daemon", "/system-policy/allow-signals"],
  ["test-monitor", "/monitor/activation"],
  ["test-sd-activation", "/sd-activation/activation"],
  ["test-sd-activation", "/sd-activation/uae"],
  ["test-sd-activation", "/sd-activation/deny-send/com.example.SendDenied"],
  ["test-sd-activation", "/sd-activation/deny-send/com.example.SendPrefixDenied"],
  ["test-sd-activation", "/sd-activation/deny-send/com.example.SendPrefixDenied.internal"],
  ["test-sd-activation", "/sd-activation/deny-receive/com.example.ReceiveDenied"],
  ["test-sd-activation", "/sd-activation/transient-services/later"],
  ["test-sd-activation", "/sd-activation/transient-services/in-advance"],
];

/** Cases that skip as root ("uid 0 is immune to this limit"), run as an ordinary user. */
const PINNED_AS_USER: Array<[string, string]> = [
  ["test-dbus-daemon", "/limits/pending-fd-timeout"],
  ["test-dbus-daemon", "/policy/count-fds"],
];

interface CaseResult {
  status: 'pass' | 'fail' | 'skip' | 'timeout';
  reason?: string;
  log: string;
}
interface Results {
  cases: Array<{ binary: string; case: string; results: Record<string, CaseResult> }>;
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe.skipIf(!existsSync(path.join(TESTS_DIR, 'test-dbus-daemon')))('libdbus installed tests (pinned subset)', () => {
  let dir: string | undefined;
  afterAll(async () => {
    if (dir) await removeTempDir(dir);
  });

  /** Runs `pinned` on dbus-daemon and ferrybus (as `user`, if given); the cases that pass only on dbus-daemon. */
  async function regressions(pinned: Array<[string, string]>, name: string, user?: string): Promise<string[]> {
    dir ??= await makeTempDir('ferrybus-installed-tests');
    const output = path.join(dir, `${name}.json`);
    const filter = `^(${pinned.map(([b, c]) => escape(`${b}:${c}`)).join('|')})$`;
    await promisify(execFile)(process.execPath, [
      path.join(REPO_ROOT, 'scripts/installed-tests.mjs'),
      '--bus=dbus-daemon,ferrybus', `--filter=${filter}`, '--timeout=30', '--jobs=4',
      `--tests-dir=${TESTS_DIR}`, `--output=${output}`, `--logs=${path.join(dir, `${name}-logs`)}`,
      ...(user ? [`--user=${user}`] : []),
    ], { maxBuffer: 16 * 1024 * 1024 });
    const results = JSON.parse(readFileSync(output, 'utf8')) as Results;
    expect(results.cases.map((c) => `${c.binary}:${c.case}`).sort()).toEqual(pinned.map(([b, c]) => `${b}:${c}`).sort());
    return results.cases
      .filter((c) => c.results['dbus-daemon']!.status === 'pass' && c.results.ferrybus!.status !== 'pass')
      .map((c) => `${c.binary} ${c.case}: ${c.results.ferrybus!.status} ${c.results.ferrybus!.reason ?? ''}`);
  }

  it('every pinned case that passes on dbus-daemon passes on ferrybus', { timeout: 120_000 }, async () => {
    expect(await regressions(PINNED, 'root')).toEqual([]);
  });

  // --user needs root (setpriv to another uid), as CI runs.
  it.skipIf(!isRoot)('every case pinned to run as an ordinary user that passes on dbus-daemon passes on ferrybus', { timeout: 60_000 }, async () => {
    const user = ensureTestUser('fbtest-bob');
    expect(await regressions(PINNED_AS_USER, 'as-user', user.name)).toEqual([]);
  });
});
