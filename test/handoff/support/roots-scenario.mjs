#!/usr/bin/env node
// Root transitions, the boot timeline of DESIGN.md §2 in miniature. Must run as root in a private
// mount namespace (it mounts tmpfs, procfs and moves mounts):
//
//   unshare --mount --propagation private node roots-scenario.mjs --outer-mnt-ns "$(readlink /proc/self/ns/mnt)"
//
// (--outer-mnt-ns: the launcher's mount namespace, which this refuses to touch.)
//
// Three trees, each on its own tmpfs (so "refers to a file of that tree" is simply "is on that
// device"), each with its own copy of node, its libraries and ferrybus at the host's paths:
// "initrd" (T1), "real root" (T2), "shutdown root" (T3). One more tmpfs, at WORK/run (a stable path
// for host clients), is bound to T1/run and then moves from tree to tree as systemd moves /run.
//
//  1. The daemon starts chrooted in T1; load clients connect, some chrooted in T1, some from the host.
//  2. switch-root: /run and /proc move from T1 to T2, T1 is emptied (systemd removes the initramfs
//     contents). The bus keeps serving from the empty root. A handoff asked for now is refused
//     (the daemon cannot resolve /proc/<pid>/root without a procfs) and loses nothing; with a procfs
//     exposed in T1 (ferrybus-roots expose-proc does this on a real system), `ferrybus handoff
//     --root /proc/<pid>/root` of a process living in T2 moves the daemon into T2.
//  3. In T2, a client run inside T2 asks `ferrybus handoff --root /` (the caller's root).
//  4. shutdown: /run moves to T3, whose /proc is empty; `--root T3` from the host moves the daemon
//     there, and T2 must then unmount without -l. In T3 it hands off in place (no procfs), then,
//     with a procfs, once more for a client inside T3 (`--root /`, dracut's pre-shutdown hook).
// After each step the daemon (same PID) is inspected through /proc: root, exe, cwd, fds and maps.
// The load clients run throughout; at the end they report (load-checks.ts judges the reports).
//
// Output: progress on stderr; one line `result {json}` on stdout, then everything started here is
// killed and the mounts go away with the namespace.
import { execFile, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectPeer } from './peer.mjs';

const REPO = fileURLToPath(new URL('../../../', import.meta.url)).replace(/\/$/, '');
const NODE = process.execPath;
const MAIN = path.join(REPO, 'dist', 'src', 'cli', 'main.js');
const SUPPORT = path.join(REPO, 'test', 'handoff', 'support');
const LOAD_CLIENT = path.join(SUPPORT, 'load-client.mjs');
const SOCKET_IN_TREE = '/run/ferrybus/bus';
const TREE_ADDRESS = `unix:path=${SOCKET_IN_TREE}`;

const USAGE = 'unshare --mount --propagation private node roots-scenario.mjs --outer-mnt-ns "$(readlink /proc/self/ns/mnt)"';
const log = (...a) => process.stderr.write(`[roots] ${a.join(' ')}\n`);

// ---------------------------------------------------------------- processes we start, by PID only
const children = new Set();
/** The trees' parent directory, on a tmpfs of this namespace (over /tmp, or /mnt, …). */
let work;

function cleanup() {
  for (const c of children) {
    try {
      process.kill(c.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}
process.on('exit', cleanup);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => process.exit(143));

/**
 * The environment of everything started here. NODE_EXTRA_CA_CERTS names a host file the trees
 * do not have (node would warn about it in every log).
 */
const ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_EXTRA_CA_CERTS'));

/**
 * Every child gets SIGKILL when this process dies, even by SIGKILL (setpriv execs the command,
 * so the PID is the command's; the setting survives the daemon's own execve).
 */
const orphanProof = (cmd, args) => ['setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args]];

class Child {
  constructor(label, cmd, args) {
    this.label = label;
    this.out = '';
    this.err = '';
    this.exit = undefined;
    this.waiters = new Set();
    this.proc = spawn(...orphanProof(cmd, args), { stdio: ['ignore', 'pipe', 'pipe'], env: ENV });
    this.pid = this.proc.pid;
    children.add(this);
    this.proc.stdout.setEncoding('utf8').on('data', (d) => ((this.out += d), this.poke()));
    this.proc.stderr.setEncoding('utf8').on('data', (d) => ((this.err += d), this.poke()));
    this.proc.on('exit', (code, signal) => {
      this.exit = { code, signal };
      children.delete(this);
      this.poke();
    });
  }

  poke() {
    for (const w of [...this.waiters]) w();
  }

  /** First match of `re` in stdout after offset `from`; rejects on exit or timeout. */
  waitFor(re, { from = 0, timeoutMs = 30_000 } = {}) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`timed out waiting for ${re} from ${this.label}\n${this.describe()}`)), timeoutMs);
      const check = () => {
        const m = re.exec(this.out.slice(from));
        if (m) return done(undefined, m);
        if (this.exit) done(new Error(`${this.label} exited (${JSON.stringify(this.exit)}) before ${re}\n${this.describe()}`));
      };
      const done = (err, m) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (err) reject(err);
        else resolve(m);
      };
      this.waiters.add(check);
      check();
    });
  }

  describe() {
    return `--- stdout of ${this.label}\n${this.out.slice(-3000)}\n--- stderr\n${this.err.slice(-3000)}`;
  }
}

/** Runs a command to completion. */
function run(cmd, args, timeoutMs = 60_000) {
  return new Promise((resolve) => {
    const child = execFile(...orphanProof(cmd, args), { timeout: timeoutMs, encoding: 'utf8', env: ENV }, (err, stdout, stderr) => {
      children.delete(entry);
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, command: [cmd, ...args].join(' ') });
    });
    const entry = { pid: child.pid };
    children.add(entry);
  });
}

function sh(cmd, ...args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

// ---------------------------------------------------------------- trees
/**
 * Copies a host file into `tree` at the same path, recreating the symlinks met on the way
 * (/lib → usr/lib on merged-/usr systems), so the tree resolves the path like the host does.
 */
function mirror(tree, hostPath) {
  const parts = hostPath.split('/').filter(Boolean);
  let cur = '/';
  for (let i = 0; i < parts.length; i++) {
    const next = path.join(cur, parts[i]);
    if (fs.lstatSync(next).isSymbolicLink()) {
      const link = fs.readlinkSync(next);
      const inTree = path.join(tree, next);
      if (!fs.existsSync(inTree)) {
        fs.mkdirSync(path.dirname(inTree), { recursive: true });
        fs.symlinkSync(link, inTree);
      }
      return mirror(tree, path.join(path.resolve(path.dirname(next), link), ...parts.slice(i + 1)));
    }
    cur = next;
  }
  const target = path.join(tree, cur);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(cur, target);
  fs.chmodSync(target, fs.statSync(cur).mode & 0o7777);
}

function librariesOf(binary) {
  return [...sh('ldd', binary).matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]).filter((p) => fs.existsSync(p));
}

/** The package directories the daemon and the clients load: the runtime dependencies and dbus-next. */
function packageClosure() {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
  const dirs = new Set();
  const resolveFrom = (fromDir, name) => {
    for (let dir = fromDir; dir.startsWith(REPO); dir = path.dirname(dir)) {
      const candidate = path.join(dir, 'node_modules', name);
      if (fs.existsSync(path.join(candidate, 'package.json'))) return candidate;
    }
    return undefined; // an optional dependency for another platform
  };
  const queue = [...Object.keys(pkg.dependencies ?? {}), 'dbus-next'].map((name) => [REPO, name]);
  while (queue.length > 0) {
    const [from, name] = queue.shift();
    const dir = resolveFrom(from, name);
    if (!dir || dirs.has(dir)) continue;
    dirs.add(dir);
    const meta = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    for (const dep of Object.keys({ ...meta.dependencies, ...meta.optionalDependencies })) queue.push([dir, dep]);
  }
  return [...dirs];
}

const devName = (dev) => {
  // st_dev → "major:minor" in hex, as /proc/PID/maps prints it.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
};
const statOf = (p) => fs.statSync(p, { bigint: true });
const sameFile = (a, b) => a.dev === b.dev && a.ino === b.ino;

function buildTree(name, packages) {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  sh('mount', '-t', 'tmpfs', '-o', 'mode=0755', `ferrybus-${name}`, dir);
  mirror(dir, NODE);
  const natives = packages.flatMap((p) => sh('find', p, '-name', '*.node', '-type', 'f').split('\n').filter(Boolean));
  for (const lib of new Set([NODE, ...natives].flatMap(librariesOf))) mirror(dir, lib);
  for (const p of [path.join(REPO, 'package.json'), path.join(REPO, 'dist'), ...packages]) {
    fs.cpSync(p, path.join(dir, p), { recursive: true });
  }
  for (const f of fs.readdirSync(SUPPORT).filter((f) => f.endsWith('.mjs'))) mirror(dir, path.join(SUPPORT, f));
  for (const d of ['run', 'proc', 'dev', 'tmp', 'etc']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  if (fs.existsSync('/etc/machine-id')) fs.copyFileSync('/etc/machine-id', path.join(dir, 'etc', 'machine-id'));
  for (const [node, major, minor] of [['null', 1, 3], ['zero', 1, 5], ['random', 1, 8], ['urandom', 1, 9]]) {
    sh('mknod', '-m', '0666', path.join(dir, 'dev', node), 'c', String(major), String(minor));
  }
  const root = statOf(dir);
  return { name, dir, dev: root.dev, devName: devName(root.dev), root, node: statOf(path.join(dir, NODE)) };
}

// ---------------------------------------------------------------- inspection of the daemon
/** Where the process lives now, seen from outside: its root, exe, cwd, open files and mappings. */
function inspect(pid, tree, others) {
  const p = (what) => `/proc/${pid}/${what}`;
  const readlink = (f) => {
    try {
      return fs.readlinkSync(f);
    } catch (err) {
      return `(${err.code})`;
    }
  };
  const fds = [];
  for (const n of fs.readdirSync(p('fd'))) {
    try {
      const s = statOf(p(`fd/${n}`));
      fds.push({ fd: Number(n), dev: s.dev, link: readlink(p(`fd/${n}`)) });
    } catch {
      // closed meanwhile
    }
  }
  const maps = fs.readFileSync(p('maps'), 'utf8').split('\n').filter(Boolean).map((line) => {
    const f = line.split(/\s+/);
    return { dev: f[3], ino: f[4], file: f.slice(5).join(' ') };
  });
  const on = (t) => ({
    fds: fds.filter((f) => f.dev === t.dev).map((f) => `fd ${f.fd} → ${f.link}`),
    maps: [...new Set(maps.filter((m) => m.dev === t.devName && m.ino !== '0').map((m) => m.file))],
  });
  const cwd = statOf(p('cwd'));
  return {
    pid,
    tree: tree.name,
    rootIsTree: sameFile(statOf(p('root')), tree.root),
    exeIsTreeNode: sameFile(statOf(p('exe')), tree.node),
    cwdInTree: cwd.dev === tree.dev,
    links: { root: readlink(p('root')), exe: readlink(p('exe')), cwd: readlink(p('cwd')) },
    argv0: fs.readFileSync(p('cmdline'), 'utf8').split('\0')[0],
    onTree: on(tree),
    onOthers: Object.fromEntries(others.map((o) => [o.name, on(o)])),
  };
}

// ---------------------------------------------------------------- the scenario
async function scenario(result) {
  // The launcher names the namespace it runs in: every mount here must stay out of it.
  const outer = process.argv[process.argv.indexOf('--outer-mnt-ns') + 1];
  if (!process.argv.includes('--outer-mnt-ns') || !outer) throw new Error(`usage: ${USAGE}`);
  if (fs.readlinkSync('/proc/self/ns/mnt') === outer) {
    throw new Error(`not in a private mount namespace (still in ${outer}): usage: ${USAGE}`);
  }
  // A tmpfs over an existing directory, in this namespace only: nothing is created outside, nothing
  // is left behind even if this process is killed (the namespace and its mounts go with its last
  // process). Not over anything this scenario reads from the host (the repository, node).
  const host = [REPO, fs.realpathSync(NODE)];
  const base = ['/tmp', '/mnt', '/media', '/srv'].find(
    (d) => fs.existsSync(d) && fs.statSync(d).isDirectory() && !host.some((p) => p === d || p.startsWith(`${d}/`)),
  );
  if (!base) throw new Error(`no directory to mount a tmpfs over outside ${host.join(' and ')}`);
  sh('mount', '-t', 'tmpfs', '-o', 'mode=1777', 'ferrybus-roots', base);
  work = fs.mkdtempSync(path.join(base, 'ferrybus-roots-'));
  const packages = packageClosure();
  const t0 = performance.now();
  const [initrd, real, shutdown] = ['initrd', 'real-root', 'shutdown-root'].map((n) => buildTree(n, packages));
  log(`trees built in ${Math.round(performance.now() - t0)} ms (${packages.length} packages each)`);
  const runDir = path.join(work, 'run');
  fs.mkdirSync(runDir);
  sh('mount', '-t', 'tmpfs', '-o', 'mode=0755', 'ferrybus-run', runDir);
  sh('mount', '--bind', runDir, path.join(initrd.dir, 'run'));
  sh('mount', '-t', 'proc', 'proc', path.join(initrd.dir, 'proc'));
  const hostAddress = `unix:path=${path.join(runDir, 'ferrybus', 'bus')}`;
  const step = (name, extra = {}) => {
    const s = { name, ...extra };
    result.steps.push(s);
    log(`step: ${name}`);
    return s;
  };

  // 1. The daemon in the initrd.
  const daemon = new Child('daemon', 'chroot', [initrd.dir, NODE, MAIN, 'daemon', '--nofork', '--print-address=1', `--address=${TREE_ADDRESS}`]);
  result.daemonLog = () => daemon.err;
  await daemon.waitFor(/^unix:/m);
  result.pid = daemon.pid;

  const load = [];
  const startLoad = async (where, role, lib, extra = []) => {
    const inTree = where === 'initrd';
    const cmd = inTree ? 'chroot' : NODE;
    const args = [
      ...(inTree ? [initrd.dir, NODE] : []), LOAD_CLIENT, '--lib', lib, '--role', role,
      '--address', inTree ? TREE_ADDRESS : hostAddress, '--window', '4', ...(lib === 'raw' ? ['--split-writes', 'yes'] : []), ...extra,
    ];
    const child = new Child(`${role} (${lib}, ${where})`, cmd, args);
    const m = await child.waitFor(/^ready (.*)$/m);
    const ready = JSON.parse(m[1]);
    const peer = { role, lib, where, uniqueName: ready.uniqueName, child, ...(role === 'service' ? { name: extra[1] } : {}) };
    load.push(peer);
    return peer;
  };
  const S0 = 'org.ferrybus.Roots.S0';
  const S1 = 'org.ferrybus.Roots.S1';
  await Promise.all([
    startLoad('initrd', 'service', 'raw', ['--name', S0]),
    startLoad('host', 'service', 'next', ['--name', S1]),
    startLoad('initrd', 'subscriber', 'next'),
    startLoad('host', 'subscriber', 'raw'),
  ]);
  await Promise.all([
    startLoad('initrd', 'caller', 'next', ['--targets', `${S0},${S1}`]),
    startLoad('host', 'caller', 'raw', ['--targets', `${S0},${S1}`]),
    startLoad('initrd', 'emitter', 'raw'),
    startLoad('host', 'emitter', 'next'),
  ]);
  await Promise.all(load.map((p) => {
    const from = p.child.out.length;
    process.kill(p.child.pid, 'SIGHUP');
    return p.child.waitFor(/^watching$/m, { from });
  }));

  // A fresh connection from the host: the bus answers, and who owns what.
  const probe = async () => {
    const peer = await connectPeer('raw', hostAddress);
    const call = (destination, member, signature = '', body = [], iface = 'org.freedesktop.DBus', p = '/org/freedesktop/DBus') =>
      peer.call({ destination, path: p, interface: iface, member, signature, body });
    const [busId] = (await call('org.freedesktop.DBus', 'GetId')).body;
    const owners = {};
    for (const n of [S0, S1]) owners[n] = (await call('org.freedesktop.DBus', 'GetNameOwner', 's', [n])).body[0];
    const echo = {};
    for (const n of [S0, S1]) echo[n] = (await call(n, 'Echo', 'u', [1], 'org.ferrybus.Load', '/org/ferrybus/Load')).body;
    const [status] = (await call('org.freedesktop.DBus', 'Status', '', [], 'org.ferrybus.Supervisor1')).body;
    peer.close();
    return { busId, owners, echo, pid: status.get('Pid').value, generation: status.get('Generation').value };
  };
  const handoffCli = async (args, inTree) => {
    const cli = inTree
      ? await run('chroot', [inTree.dir, NODE, MAIN, 'handoff', '--address', TREE_ADDRESS, '--json', ...args])
      : await run(NODE, [MAIN, 'handoff', '--address', hostAddress, '--json', ...args]);
    let reply;
    try {
      reply = JSON.parse(cli.stdout);
    } catch {
      reply = undefined;
    }
    return { command: cli.command, code: cli.code, reply, stderr: cli.stderr.trim() };
  };

  result.busId = (await probe()).busId;
  result.peers = load.map(({ role, lib, where, uniqueName, name }) => ({ role, lib, where, uniqueName, ...(name ? { name } : {}) }));
  step('serving from the initrd', { inspect: inspect(daemon.pid, initrd, [real, shutdown]), probe: await probe() });

  // 2. switch-root: /run and /proc move into the real root; the initrd is emptied.
  sh('mount', '--move', path.join(initrd.dir, 'run'), path.join(real.dir, 'run'));
  sh('mount', '--move', path.join(initrd.dir, 'proc'), path.join(real.dir, 'proc'));
  for (const entry of fs.readdirSync(initrd.dir)) fs.rmSync(path.join(initrd.dir, entry), { recursive: true, force: true });
  step('switch-root: initrd emptied, daemon still in it', {
    initrdEntries: fs.readdirSync(initrd.dir),
    inspect: inspect(daemon.pid, initrd, [real, shutdown]),
    probe: await probe(),
  });
  step('handoff into the real root without a procfs in the old root', {
    handoff: await handoffCli(['--root', real.dir]),
    probe: await probe(),
  });
  // What `ferrybus-roots expose-proc` does on a real system: a procfs in the daemon's root.
  fs.mkdirSync(path.join(initrd.dir, 'proc'));
  sh('mount', '-t', 'proc', 'proc', path.join(initrd.dir, 'proc'));
  // A process living in the real root names it, as PID 1 does after switch-root.
  const resident = new Child('real-root resident', 'chroot', [real.dir, NODE, '-e', 'console.log("ready"); setInterval(() => {}, 1 << 30)']);
  await resident.waitFor(/^ready$/m);
  step('handoff into the real root (--root /proc/<pid>/root)', {
    handoff: await handoffCli(['--root', `/proc/${resident.pid}/root`]),
    inspect: inspect(daemon.pid, real, [initrd, shutdown]),
    probe: await probe(),
  });
  process.kill(resident.pid, 'SIGKILL');
  await new Promise((resolve) => (resident.exit ? resolve() : resident.proc.once('exit', resolve)));
  sh('umount', path.join(initrd.dir, 'proc'));
  fs.rmdirSync(path.join(initrd.dir, 'proc'));

  // 3. From inside the real root, into the caller's root (ferrybus-root.service).
  step('handoff requested from inside the real root (--root /)', {
    handoff: await handoffCli(['--root', '/'], real),
    inspect: inspect(daemon.pid, real, [initrd, shutdown]),
    probe: await probe(),
  });

  // 4. shutdown: /run moves to the shutdown root, whose /proc is an empty directory (as in
  //    dracut's unpacked /run/initramfs); the real root names it by path (ferrybus-shutdown.service).
  sh('mount', '--move', path.join(real.dir, 'run'), path.join(shutdown.dir, 'run'));
  step('handoff into the shutdown root (--root <path>)', {
    handoff: await handoffCli(['--root', shutdown.dir]),
    inspect: inspect(daemon.pid, shutdown, [initrd, real]),
    probe: await probe(),
  });
  // Nothing holds the real root any more: it unmounts without -l.
  sh('umount', path.join(real.dir, 'proc'));
  const umount = spawnSync('umount', [real.dir], { encoding: 'utf8' });
  step('real root unmounted', { code: umount.status, stderr: umount.stderr.trim(), probe: await probe() });
  // The image that started in a root without procfs can still hand off (in place).
  step('handoff in place inside the shutdown root without procfs', {
    handoff: await handoffCli([]),
    inspect: inspect(daemon.pid, shutdown, [initrd, real]),
    probe: await probe(),
  });
  // dracut's pre-shutdown hook: a procfs in the shutdown root, then `handoff --root /` from inside it.
  sh('mount', '-t', 'proc', 'proc', path.join(shutdown.dir, 'proc'));
  step('handoff requested from inside the shutdown root (--root /)', {
    handoff: await handoffCli(['--root', '/'], shutdown),
    inspect: inspect(daemon.pid, shutdown, [initrd, real]),
    probe: await probe(),
  });

  // The clients report: senders first, then receivers (their last round trip comes after all).
  const reportOf = async (p) => {
    const from = p.child.out.length;
    process.kill(p.child.pid, 'SIGUSR2');
    const m = await p.child.waitFor(/^report (.*)$/m, { from, timeoutMs: 60_000 });
    return JSON.parse(m[1]);
  };
  const senders = load.filter((p) => p.role === 'caller' || p.role === 'emitter');
  const receivers = load.filter((p) => p.role === 'service' || p.role === 'subscriber');
  result.reports = [...(await Promise.all(senders.map(reportOf))), ...(await Promise.all(receivers.map(reportOf)))];
  result.lost = load.filter((p) => /^lost /m.test(p.child.out) || p.child.exit).map((p) => `${p.child.label}: ${p.child.out}`);
  result.daemonAlive = daemon.exit === undefined;
}

const result = { steps: [] };
try {
  await scenario(result);
  result.ok = true;
} catch (err) {
  result.ok = false;
  result.error = String(err?.stack ?? err);
}
result.daemonLog = typeof result.daemonLog === 'function' ? result.daemonLog().slice(-6000) : '';
process.stdout.write(`result ${JSON.stringify(result, (_, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
process.exit(0);
