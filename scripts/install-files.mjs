#!/usr/bin/env node
// Installs ferrybus from the bundle (npm run bundle) into a file system tree:
//
//   <prefix>/lib/ferrybus/ferrybus.cjs            the bundle's entry (units run it with node directly)
//   <prefix>/lib/ferrybus/ferrybus.mjs            the entry of earlier releases (runs ferrybus.cjs)
//   <prefix>/lib/ferrybus/ferrybus-program.cjs    the program it loads, and ferrybus-program.cache,
//                                                 its V8 code cache (when the bundle has one)
//   <prefix>/lib/ferrybus/ferrybus-vendor.cjs     the packages the program loads late (yargs, winston)
//   <prefix>/lib/ferrybus/node_modules/koffi/...   koffi, linux-x64 only
//   <prefix>/lib/ferrybus/ferrybus-roots           root-transition helper for units and hooks
//   <prefix>/bin/ferrybus                          sh wrapper for people: exec node <bundle> "$@"
//   <prefix>/lib/systemd/system/ferrybus*.{service,socket}  the units
//   <prefix>/lib/systemd/system/{systemd-logind,getty-static}.service.d/ferrybus.conf  drop-ins
//   /usr/share/dbus-1/system.d/org.ferrybus.Supervisor1.conf  the bus policy for `ferrybus status`…
//   <prefix>/lib/dracut/modules.d/90ferrybus/      the dracut module
//   <prefix>/lib/dracut/modules.d/08dbus/          dracut's "dbus" meta module, ferrybus-aware
//
// Usage: npm run install-files -- --destdir DIR [--prefix /usr] [--node /usr/bin/node] [--no-bundle]
//   --destdir  staging root (default /, i.e. install for real)
//   --prefix   default /usr; units and the dracut module are rewritten when it differs
//   --node     the node binary the units and the wrapper call (default /usr/bin/node); it must
//              exist at that same path in the initrd, the real root and the shutdown root
//   --no-bundle  use dist/bundle as it is instead of rebuilding it first
// Nothing is enabled: run `systemctl enable ferrybus.service ferrybus-root.service
// ferrybus-shutdown.service` (or `systemctl --root=DIR enable …`) and rebuild the initramfs
// (README, "Install as the system bus").

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const opts = { destdir: '/', prefix: '/usr', node: '/usr/bin/node', bundle: true };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split(/=(.*)/s, 2);
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '') throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--destdir': opts.destdir = value(); break;
      case '--prefix': opts.prefix = value(); break;
      case '--node': opts.node = value(); break;
      case '--no-bundle': opts.bundle = false; break;
      case '-h': case '--help':
        process.stdout.write('usage: npm run install-files -- --destdir DIR [--prefix /usr] [--node /usr/bin/node] [--no-bundle]\n');
        process.exit(0);
        break;
      default: throw new Error(`unknown option ${argv[i]}`);
    }
  }
  for (const k of ['prefix', 'node']) {
    if (!path.isAbsolute(opts[k])) throw new Error(`--${k} must be an absolute path, got ${opts[k]}`);
  }
  opts.destdir = path.resolve(opts.destdir);
  return opts;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`install-files: ${err.message}\n`);
  process.exit(64);
}

const bundleDir = path.join(repo, 'dist/bundle');
if (opts.bundle) execFileSync(process.execPath, [path.join(repo, 'scripts/bundle.mjs')], { stdio: 'inherit' });
if (!fs.existsSync(path.join(bundleDir, 'ferrybus.cjs'))) {
  process.stderr.write('install-files: dist/bundle/ferrybus.cjs is missing; run `npm run bundle` first\n');
  process.exit(1);
}

const libdir = path.posix.join(opts.prefix, 'lib/ferrybus');
const dest = (p) => path.join(opts.destdir, p);
const installed = [];

/** Text files name /usr/lib/ferrybus and /usr/bin/node; rewrite them for another prefix or node. */
function rewrite(text) {
  return text.replaceAll('/usr/lib/ferrybus', libdir).replaceAll('/usr/bin/node', opts.node);
}

function install(from, to, mode, { text = false } = {}) {
  const target = dest(to);
  fs.mkdirSync(path.dirname(target), { recursive: true });
  if (text) fs.writeFileSync(target, rewrite(fs.readFileSync(from, 'utf8')));
  else fs.copyFileSync(from, target);
  fs.chmodSync(target, mode);
  installed.push(to);
}

function installTree(fromDir, toDir) {
  for (const entry of fs.readdirSync(fromDir, { withFileTypes: true })) {
    const from = path.join(fromDir, entry.name);
    const to = path.posix.join(toDir, entry.name);
    if (entry.isDirectory()) installTree(from, to);
    else install(from, to, from.endsWith('.node') ? 0o755 : 0o644);
  }
}

// The bundle and koffi. Replace the koffi tree whole so no file of an older version lingers.
fs.rmSync(dest(path.posix.join(libdir, 'node_modules')), { recursive: true, force: true });
install(path.join(bundleDir, 'ferrybus.cjs'), path.posix.join(libdir, 'ferrybus.cjs'), 0o644);
install(path.join(bundleDir, 'ferrybus.mjs'), path.posix.join(libdir, 'ferrybus.mjs'), 0o644);
install(path.join(bundleDir, 'ferrybus-program.cjs'), path.posix.join(libdir, 'ferrybus-program.cjs'), 0o644);
install(path.join(bundleDir, 'ferrybus-vendor.cjs'), path.posix.join(libdir, 'ferrybus-vendor.cjs'), 0o644);
// The code cache only helps the node it was made by (scripts/bundle.mjs): a bundle without one
// must not leave an older one behind (it would be refused, but read at every start).
const cache = path.posix.join(libdir, 'ferrybus-program.cache');
if (fs.existsSync(path.join(bundleDir, 'ferrybus-program.cache'))) install(path.join(bundleDir, 'ferrybus-program.cache'), cache, 0o644);
else fs.rmSync(dest(cache), { force: true });
installTree(path.join(bundleDir, 'node_modules'), path.posix.join(libdir, 'node_modules'));
install(path.join(repo, 'systemd/ferrybus-roots'), path.posix.join(libdir, 'ferrybus-roots'), 0o755, { text: true });

// The command for people. Units never use it: argv[1] must be the bundle itself.
const wrapper = path.posix.join(opts.prefix, 'bin/ferrybus');
fs.mkdirSync(path.dirname(dest(wrapper)), { recursive: true });
fs.writeFileSync(dest(wrapper), `#!/bin/sh\nexec ${opts.node} ${libdir}/ferrybus.cjs "$@"\n`);
fs.chmodSync(dest(wrapper), 0o755);
installed.push(wrapper);

// Units: /usr/lib/systemd/system is read by Debian 12 and Fedora alike.
const unitdir = path.posix.join(opts.prefix, 'lib/systemd/system');
for (const unit of fs.readdirSync(path.join(repo, 'systemd')).filter((f) => /\.(service|socket)$/.test(f)).sort()) {
  install(path.join(repo, 'systemd', unit), path.posix.join(unitdir, unit), 0o644, { text: true });
}
// Drop-ins for distribution units that judge "is there a system bus" by dbus-daemon's files
// (Debian's systemd-logind and getty-static): each file explains itself.
for (const dir of fs.readdirSync(path.join(repo, 'systemd')).filter((f) => f.endsWith('.d')).sort()) {
  for (const f of fs.readdirSync(path.join(repo, 'systemd', dir)).sort()) {
    install(path.join(repo, 'systemd', dir, f), path.posix.join(unitdir, dir, f), 0o644);
  }
}

// The bus policy that lets root call ferrybus's own interface under the stock system.conf.
// /usr/share/dbus-1 is where dbus-daemon's system.conf includes system.d from, whatever the prefix.
install(path.join(repo, 'dbus/org.ferrybus.Supervisor1.conf'), '/usr/share/dbus-1/system.d/org.ferrybus.Supervisor1.conf', 0o644);

// The dracut modules: ferrybus itself, and "dbus" (08dbus), which picks ferrybus for the modules
// that need a bus where ferrybus is the system bus (see its module-setup.sh).
for (const name of ['90ferrybus', '08dbus']) {
  const moduleDir = path.posix.join(opts.prefix, 'lib/dracut/modules.d', name);
  fs.rmSync(dest(moduleDir), { recursive: true, force: true });
  for (const f of fs.readdirSync(path.join(repo, 'dracut-module', name)).sort()) {
    install(path.join(repo, 'dracut-module', name, f), path.posix.join(moduleDir, f), 0o755, { text: true });
  }
}

process.stdout.write(`installed ${installed.length} files into ${opts.destdir} (prefix ${opts.prefix}, node ${opts.node})\n`);
if (process.env.FERRYBUS_INSTALL_VERBOSE) for (const f of installed) process.stdout.write(`  ${f}\n`);
