#!/usr/bin/env node
// Runs libdbus's own installed tests (Debian package dbus-tests) against dbus-daemon,
// dbus-broker and ferrybus, case by case, and compares the buses.
//
//   node scripts/installed-tests.mjs [--bus=dbus-daemon,dbus-broker,ferrybus] [--filter=REGEX]
//     [--timeout=S] [--jobs=N] [--tests-dir=DIR] [--output=FILE] [--logs=DIR] [--user=NAME]
//
// The tests start "the bus" themselves: test-utils-glib.c spawns "$DBUS_TEST_DAEMON
// --config-file=$DBUS_TEST_DATA/... --nofork --print-address=1 [--address=...]
// --systemd-activation", reads the address from its stdout and ends it with SIGTERM to the pid
// it spawned. So each bus is given as a DBUS_TEST_DAEMON that execs in the same pid:
// /usr/bin/dbus-daemon, scripts/installed-tests/dbus-broker-as-daemon.sh (dbus-broker-launch
// dressed as dbus-daemon) and scripts/installed-tests/ferrybus-as-daemon.sh (the compiled
// dist/ of this checkout: build first with `npx tsc -p tsconfig.build.json`).
//
// Which binaries run: only those that start a bus through DBUS_TEST_DAEMON (the callers of
// test_get_dbus_daemon() in dbus's test/, and the shell tests that use DBUS_TEST_DAEMON):
//   test-dbus-daemon, test-dbus-daemon-eavesdrop, test-monitor, test-header-fields,
//   test-containers, test-sd-activation, test-uid-permissions (GLib binaries, one run per
//   case: `-l` lists the cases, `-p CASE` runs one), test-dbus-daemon-fork.sh and
//   test-apparmor-activation.sh (scripts, one case each; the latter skips itself without
//   AppArmor).
// Excluded, and why:
//   test-assertions, test-atomic, test-corrupt, test-desktop-file, test-fdpass, test-hash,
//   test-loopback, test-marshal, test-message, test-misc-internals, test-printf, test-refs,
//   test-relay, test-server-oom, test-shell, test-syntax, test-sysdeps, test-syslog,
//   test-userdb, test-variant — libdbus unit tests, or peer-to-peer tests over their own
//   DBusServer: they never start a bus, so every bus would give the same result.
//   test-apparmor-activation (the binary) — run only through its .sh wrapper, which loads the
//   AppArmor profile it needs first.
//   test-service, test-sleep-forever — helpers the other tests start, not tests.
//   manual-* — manual tests (no .test file; manual-test-thread-blocking needs a hand-run bus).
//   integration/transient-services.sh — needs a systemd user session, not DBUS_TEST_DAEMON.
//   test-dbus-launch-eval.sh, test-dbus-launch-x11.sh, test-counter (debug-build only) —
//   dbus-launch starts its compiled-in dbus-daemon, not DBUS_TEST_DAEMON; test-counter is a
//   unit test.
//
// Each case runs in its own session/process group (detached), as the current uid, with a
// private HOME, XDG_RUNTIME_DIR and XDG_DATA_HOME, and a marker variable in its environment;
// afterwards the group is killed, and so is every process still carrying the marker (a bus
// started with --fork leaves the group with setsid but keeps the environment).
// Note: run as root, the tests also run the cases that need another uid (messagebus,
// nobody: test-uid-permissions, some of test-dbus-daemon); as another user they skip them.
// Some skip as root instead (/limits/pending-fd-timeout: "uid 0 is immune", a dbus-daemon
// exemption removed in 2017 but kept in the test): --user=NAME (run as root) runs every case,
// and the bus it starts, as that user (setpriv), with the private directories made its own.
//
// Output: a table (case × bus), totals per bus, the cases that pass on dbus-daemon but not
// on ferrybus; a JSON file (default test/installed-tests/results/latest.json) with every
// result and the tail of each non-passing case's output; each case's full output under
// --logs (default test/installed-tests/results/logs/, not committed).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HERE = path.join(REPO_ROOT, 'scripts', 'installed-tests');

const BUS_DAEMONS = {
  'dbus-daemon': '/usr/bin/dbus-daemon',
  'dbus-broker': path.join(HERE, 'dbus-broker-as-daemon.sh'),
  ferrybus: path.join(HERE, 'ferrybus-as-daemon.sh'),
};

const GLIB_BINARIES = [
  'test-dbus-daemon',
  'test-dbus-daemon-eavesdrop',
  'test-monitor',
  'test-header-fields',
  'test-containers',
  'test-sd-activation',
  'test-uid-permissions',
];
const SCRIPT_TESTS = ['test-dbus-daemon-fork.sh', 'test-apparmor-activation.sh'];
const SCRIPT_CASE = '(script)';
const DEFAULT_TESTS_DIRS = ['/usr/lib/dbus-1.0/installed-tests/dbus', '/usr/libexec/installed-tests/dbus'];

function usage(message) {
  if (message) process.stderr.write(`installed-tests: ${message}\n`);
  process.stderr.write(
    'usage: node scripts/installed-tests.mjs [--bus=dbus-daemon,dbus-broker,ferrybus] [--filter=REGEX]\n' +
      '         [--timeout=S] [--jobs=N] [--tests-dir=DIR] [--output=FILE] [--logs=DIR] [--user=NAME]\n',
  );
  process.exit(64);
}

function parseArgs(argv) {
  const opts = {
    buses: Object.keys(BUS_DAEMONS),
    filter: null,
    timeout: 60,
    jobs: 2,
    testsDir: null,
    output: path.join(REPO_ROOT, 'test', 'installed-tests', 'results', 'latest.json'),
    logs: path.join(REPO_ROOT, 'test', 'installed-tests', 'results', 'logs'),
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    if (arg === '-h' || arg === '--help') usage();
    let value;
    const eq = arg.indexOf('=');
    if (eq >= 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    } else {
      value = argv[++i];
      if (value === undefined) usage(`${arg} needs a value`);
    }
    switch (arg) {
      case '--bus':
        opts.buses = value.split(',').filter(Boolean);
        for (const b of opts.buses) if (!(b in BUS_DAEMONS)) usage(`unknown bus ${b}`);
        break;
      case '--filter':
        try {
          opts.filter = new RegExp(value);
        } catch (err) {
          usage(`--filter: ${err.message}`);
        }
        break;
      case '--timeout':
        opts.timeout = Number(value);
        if (!(opts.timeout > 0)) usage('--timeout must be a positive number of seconds');
        break;
      case '--jobs':
        opts.jobs = Number(value);
        if (!Number.isInteger(opts.jobs) || opts.jobs < 1) usage('--jobs must be a positive integer');
        break;
      case '--tests-dir':
        opts.testsDir = path.resolve(value);
        break;
      case '--output':
        opts.output = path.resolve(value);
        break;
      case '--logs':
        opts.logs = path.resolve(value);
        break;
      case '--user':
        opts.user = lookupUser(value);
        break;
      default:
        usage(`unknown option ${arg}`);
    }
  }
  if (!opts.testsDir) {
    opts.testsDir = DEFAULT_TESTS_DIRS.find((d) => fs.existsSync(path.join(d, 'test-dbus-daemon')));
    if (!opts.testsDir) usage(`no installed tests in ${DEFAULT_TESTS_DIRS.join(' or ')} (apt-get install dbus-tests)`);
  }
  return opts;
}

/** uid and gid of a local user, for --user. */
function lookupUser(name) {
  try {
    const id = (flag) => Number(execFileSync('id', [flag, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim());
    return { name, uid: id('-u'), gid: id('-g') };
  } catch {
    return usage(`--user: no user ${name}`);
  }
}

function firstLine(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0].trim();
  } catch (err) {
    return `unknown (${err.message.split('\n')[0]})`;
  }
}

function versions() {
  const dirty = firstLine('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no', 'src']);
  return {
    ferrybus: `${firstLine('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'])}${dirty ? ' + uncommitted changes in src/' : ''}`,
    node: process.version,
    'dbus-daemon': firstLine('/usr/bin/dbus-daemon', ['--version']),
    'dbus-broker': firstLine('dbus-broker', ['--version']),
    'dbus-tests': firstLine('dpkg-query', ['-W', '-f=${Version}', 'dbus-tests']),
  };
}

/** The cases of one GLib test binary, from `-l` (lines that are test paths). */
function listCases(binary) {
  const out = execFileSync(binary, ['-l'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return out.split('\n').filter((l) => l.startsWith('/')).map((l) => l.trim());
}

function enumerate(opts) {
  const cases = [];
  for (const name of GLIB_BINARIES) {
    const binary = path.join(opts.testsDir, name);
    if (!fs.existsSync(binary)) {
      process.stderr.write(`installed-tests: ${binary} missing, skipped\n`);
      continue;
    }
    for (const c of listCases(binary)) cases.push({ binary: name, case: c });
  }
  for (const name of SCRIPT_TESTS) {
    if (fs.existsSync(path.join(opts.testsDir, name))) cases.push({ binary: name, case: SCRIPT_CASE });
  }
  return opts.filter ? cases.filter((c) => opts.filter.test(`${c.binary}:${c.case}`)) : cases;
}

/**
 * The verdict of one case from its TAP output. GLib prints "ok N /path", "ok N /path # SKIP
 * reason" or "not ok N /path"; a failed assertion usually aborts before any line is printed.
 * "-p /a" also runs "/a/b", so only the line naming the case itself counts.
 */
export function verdict(output, testCase, exit) {
  const lines = output.split('\n');
  let line = null;
  if (testCase === SCRIPT_CASE) {
    const results = lines.filter((l) => /^(not )?ok\b/.test(l));
    const plan = lines.find((l) => /^1\.\.\d+/.test(l));
    if (plan && /^1\.\.0\s*#\s*SKIP/i.test(plan)) return { status: 'skip', reason: plan.replace(/^1\.\.0\s*#\s*SKIP\s*-?\s*/i, '') };
    if (exit.timedOut) return { status: 'timeout', reason: `no result within the timeout` };
    const failed = results.find((l) => l.startsWith('not ok'));
    if (failed) return { status: 'fail', reason: failed };
    if (exit.code !== 0) return { status: 'fail', reason: exitText(exit) };
    if (results.length === 0) return { status: 'fail', reason: 'no TAP result' };
    if (results.every((l) => /#\s*SKIP/i.test(l))) return { status: 'skip', reason: results[0].replace(/^.*#\s*SKIP\s*/i, '') };
    return { status: 'pass' };
  }
  const re = /^(not ok|ok) \d+ (\S+)(?:\s+#\s*(SKIP|TODO)\b\s*(.*))?$/;
  for (const l of lines) {
    const m = re.exec(l.trim());
    if (m && m[2] === testCase) line = m;
  }
  if (exit.timedOut) return { status: 'timeout', reason: 'no result within the timeout' };
  if (line && line[1] === 'ok' && line[3] === 'SKIP') return { status: 'skip', reason: line[4] || 'skipped' };
  if (line && line[1] === 'not ok') return { status: 'fail', reason: lastError(lines) ?? 'not ok' };
  if (line && line[1] === 'ok' && exit.code === 0) return { status: 'pass' };
  if (line && line[1] === 'ok') return { status: 'fail', reason: `ok, but ${exitText(exit)}` };
  return { status: 'fail', reason: lastError(lines) ?? `no TAP result; ${exitText(exit)}` };
}

function exitText(exit) {
  return exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`;
}

/** The most telling line of a failed case: GLib's assertion or error message. */
function lastError(lines) {
  const patterns = [/^Bail out!/, /ERROR:|assertion|CRITICAL/, /^not ok/];
  for (const p of patterns) {
    const hit = lines.filter((l) => p.test(l)).pop();
    if (hit) return hit.trim().slice(0, 300);
  }
  return null;
}

function sanitize(name) {
  return name.replace(/^\//, '').replace(/[^A-Za-z0-9._-]+/g, '_') || 'case';
}

/** Pids of every process whose environment holds marker=token (survivors of setsid). */
function pidsWithMarker(marker) {
  const needle = Buffer.from(`\0${marker}\0`);
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${pid}/environ`), Buffer.from([0])]);
      if (env.includes(needle)) pids.push(pid);
    } catch {
      // Gone, or not ours to read.
    }
  }
  return pids;
}

function killLeftovers(pgid, marker) {
  const killed = [];
  try {
    process.kill(-pgid, 'SIGKILL');
    killed.push(`group ${pgid}`);
  } catch {
    // The group is already empty.
  }
  for (const pid of pidsWithMarker(marker)) {
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(String(pid));
    } catch {
      // Exited meanwhile.
    }
  }
  return killed;
}

let runCounter = 0;

function runCase(opts, bus, item) {
  const token = `${process.pid}-${++runCounter}`;
  const marker = `FERRYBUS_INSTALLED_TEST=${token}`;
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-itest-'));
  for (const d of ['home', 'runtime', 'data-home']) fs.mkdirSync(path.join(tmp, d), { mode: 0o700 });
  if (opts.user) for (const d of ['', 'home', 'runtime', 'data-home']) fs.chownSync(path.join(tmp, d), opts.user.uid, opts.user.gid);
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/^(DBUS_|NOTIFY_SOCKET$|LISTEN_)/.test(k)) delete env[k];
  Object.assign(env, {
    DBUS_TEST_DAEMON: BUS_DAEMONS[bus],
    DBUS_TEST_DATA: path.join(opts.testsDir, 'data'),
    DBUS_TEST_EXEC: opts.testsDir,
    DBUS_TEST_HOMEDIR: path.join(tmp, 'home'),
    DBUS_TEST_DBUS_MONITOR: '/usr/bin/dbus-monitor',
    DBUS_TEST_DBUS_SEND: '/usr/bin/dbus-send',
    DBUS_SESSION_BUS_ADDRESS: 'do-not-use-real-session:',
    HOME: path.join(tmp, 'home'),
    XDG_RUNTIME_DIR: path.join(tmp, 'runtime'),
    XDG_DATA_HOME: path.join(tmp, 'data-home'),
    FERRYBUS_INSTALLED_TEST: token,
  });
  const binary = path.join(opts.testsDir, item.binary);
  const args = item.case === SCRIPT_CASE ? [] : ['--tap', '-p', item.case];
  const started = Date.now();
  return new Promise((resolve) => {
    // setpriv execs the test in its own pid: the group and the marker work as without it.
    const [file, argv] = opts.user
      ? ['/usr/bin/setpriv', [`--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--clear-groups', '--', binary, ...args]]
      : [binary, args];
    const child = spawn(file, argv, { env, cwd: tmp, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    // Both streams in arrival order for the log, stdout alone for the verdict: the bus's
    // stderr can land in the middle of a TAP line.
    const chunks = [];
    const stdout = [];
    child.stdout.on('data', (c) => {
      chunks.push(c);
      stdout.push(c);
    });
    child.stderr.on('data', (c) => chunks.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {}
      setTimeout(() => {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {}
      }, 2000).unref();
    }, opts.timeout * 1000);
    let spawnError = null;
    child.on('error', (err) => {
      spawnError = err;
    });
    // 'exit', not 'close': a leftover bus holding our pipes would keep 'close' away until it
    // is killed, and it is killed only here.
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const killed = killLeftovers(child.pid, marker);
      let finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        complete(code, signal, killed);
      };
      child.on('close', finish);
      setTimeout(finish, 2000).unref();
    });
    function complete(code, signal, killed) {
      const output = Buffer.concat(chunks).toString('utf8') + (spawnError ? `\nspawn: ${spawnError.message}\n` : '');
      const exit = { code, signal, timedOut };
      const v = verdict(Buffer.concat(stdout).toString('utf8'), item.case, exit);
      if (v.status === 'fail' && !v.reason.startsWith('Bail out!')) v.reason = lastError(output.split('\n')) ?? v.reason;
      const logFile = path.join(opts.logs, bus, item.binary, `${sanitize(item.case)}.log`);
      fs.mkdirSync(path.dirname(logFile), { recursive: true });
      fs.writeFileSync(logFile, `# ${binary} ${args.join(' ')}\n# DBUS_TEST_DAEMON=${env.DBUS_TEST_DAEMON}\n${output}\n# ${exitText(exit)}${timedOut ? ' (timeout)' : ''}\n`);
      fs.rmSync(tmp, { recursive: true, force: true });
      const result = {
        status: v.status,
        durationMs: Date.now() - started,
        exit: exitText(exit),
        log: path.relative(REPO_ROOT, logFile),
      };
      if (v.reason) result.reason = v.reason;
      if (killed.length > 1 || (killed.length === 1 && !killed[0].startsWith('group'))) result.leftovers = killed;
      if (v.status !== 'pass') result.tail = output.split('\n').filter(Boolean).slice(-25);
      resolve(result);
    }
  });
}

async function runAll(opts, cases) {
  const queue = [];
  for (const item of cases) {
    item.results = {};
    for (const bus of opts.buses) queue.push({ item, bus });
  }
  let done = 0;
  const total = queue.length;
  async function worker() {
    while (queue.length > 0) {
      const { item, bus } = queue.shift();
      const r = await runCase(opts, bus, item);
      item.results[bus] = r;
      done++;
      const why = r.status === 'pass' ? '' : ` (${(r.reason ?? '').slice(0, 100)})`;
      process.stderr.write(`[${done}/${total}] ${bus} ${item.binary} ${item.case}: ${r.status} ${(r.durationMs / 1000).toFixed(1)}s${why}\n`);
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.jobs, total) }, worker));
}

const LABEL = { pass: 'PASS', fail: 'FAIL', skip: 'skip', timeout: 'TIME' };

function totals(opts, cases) {
  const t = {};
  for (const bus of opts.buses) {
    t[bus] = { pass: 0, fail: 0, skip: 0, timeout: 0 };
    for (const c of cases) t[bus][c.results[bus].status]++;
  }
  return t;
}

function report(opts, cases, tot) {
  const rows = cases.map((c) => [`${c.binary} ${c.case}`, ...opts.buses.map((b) => LABEL[c.results[b].status])]);
  const header = ['case', ...opts.buses];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  const lines = [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt), ''];
  for (const bus of opts.buses) {
    const x = tot[bus];
    lines.push(`${bus.padEnd(12)} pass ${x.pass}  fail ${x.fail}  skip ${x.skip}  timeout ${x.timeout}  (of ${cases.length})`);
  }
  if (opts.buses.includes('dbus-daemon') && opts.buses.includes('ferrybus')) {
    const regressions = cases.filter((c) => c.results['dbus-daemon'].status === 'pass' && c.results.ferrybus.status !== 'pass');
    lines.push('', `pass on dbus-daemon, not on ferrybus: ${regressions.length}`);
    for (const c of regressions) {
      const r = c.results.ferrybus;
      lines.push(`  ${c.binary} ${c.case}: ${r.status} — ${(r.reason ?? '').slice(0, 160)}`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.buses.includes('ferrybus') && !fs.existsSync(path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    usage('dist/ is missing: build ferrybus first (npx tsc -p tsconfig.build.json)');
  }
  const cases = enumerate(opts);
  if (cases.length === 0) usage('no test case matches');
  process.stderr.write(`installed-tests: ${cases.length} cases × ${opts.buses.length} buses, ${opts.jobs} at a time, timeout ${opts.timeout}s, from ${opts.testsDir}\n`);
  const started = new Date();
  await runAll(opts, cases);
  const tot = totals(opts, cases);
  const doc = {
    generated: started.toISOString(),
    durationS: Math.round((Date.now() - started.getTime()) / 1000),
    uid: opts.user ? opts.user.uid : process.getuid(),
    user: opts.user ? opts.user.name : null,
    testsDir: opts.testsDir,
    timeoutS: opts.timeout,
    jobs: opts.jobs,
    filter: opts.filter ? opts.filter.source : null,
    versions: versions(),
    daemons: Object.fromEntries(opts.buses.map((b) => [b, path.relative(REPO_ROOT, BUS_DAEMONS[b]) || BUS_DAEMONS[b]])),
    totals: tot,
    cases: cases.map((c) => ({ binary: c.binary, case: c.case, results: c.results })),
  };
  fs.mkdirSync(path.dirname(opts.output), { recursive: true });
  fs.writeFileSync(opts.output, JSON.stringify(doc, null, 2) + '\n');
  report(opts, cases, tot);
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), opts.output)}; logs: ${path.relative(process.cwd(), opts.logs)}/\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    process.stderr.write(`installed-tests: ${err.stack ?? err}\n`);
    process.exit(1);
  });
}
