#!/usr/bin/env node
// Builds the self-contained ferrybus image that the initrd, the real root and the shutdown
// root all run:
//   dist/bundle/ferrybus.cjs           the entry (argv[1] of every generation): a small loader
//   dist/bundle/ferrybus.mjs           the entry of earlier releases, kept for command lines that
//                                      name it (an older initrd's units): it runs ferrybus.cjs
//   dist/bundle/ferrybus-program.cjs   the program, every dependency inlined except koffi
//   dist/bundle/ferrybus-program.cache V8's code cache for it (optional: see below)
//   dist/bundle/ferrybus-vendor.cjs    the packages the program loads only after the bus serves
//                                      or for an operator's command (yargs, winston): read on
//                                      first use, so a start or a handoff reads half the text
//   dist/bundle/node_modules/koffi     only what linux-x64/glibc needs (its package.json, its JS
//                                      entry points and the linux_x64 native build)
// No other node_modules tree is needed.
//
// Why a code cache: parsing and compiling the 1.1 MB program took ~28 ms of every start, so of
// every handoff pause. The loader compiles the program with vm.Script and the cache written here
// by running the program once (a bus started and stopped, so the functions of the start path
// are in it). V8 takes a cache only from the same V8 version with the same flags: it is written
// with the node flags of systemd/ferrybus.service's ExecStart, and by the node that runs this
// script. A cache V8 rejects (another node, other flags), one from another build (the build id
// in its first bytes is not the loader's) or a missing one only costs the compile it would have
// saved. The program is CommonJS because only a script (not an ES module) takes a code cache
// without --experimental-vm-modules.
//
// Why koffi stays external: it loads a native .node file by path relative to its own module;
// inlined, that path would point nowhere. Copied beside the bundle, the loader dlopens the
// native build (node_modules/koffi/build/koffi/linux_x64/koffi.node) itself when the program
// first requires koffi: koffi's own entry point spends ~10 ms of every start and handoff
// choosing a build, a choice made here. Its JS entry points stay as the fallback for a native
// build of another version.
//
// Why the version is replaced: src/cli/version.ts reads ../../../package.json at run time,
// relative to the compiled file; inside the bundle no package.json is there. The bundle gets
// `export const VERSION = "<package.json version>"` instead, fixed at bundle time; the
// unbundled build (tsc) keeps reading package.json as before.
//
// Why the entry is CommonJS: node starts an ES module entry through its ES module loader, which
// costs ~5 ms before the first line runs (26 against 21 ms here, node's own start included),
// at every start and every handoff.
//
// Usage: node scripts/bundle.mjs [--outdir DIR] [--no-code-cache]   (default dist/bundle)

import { build } from 'esbuild';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdirFlag = process.argv.indexOf('--outdir');
const outdir = path.resolve(outdirFlag >= 0 ? process.argv[outdirFlag + 1] : path.join(repo, 'dist/bundle'));
const withCodeCache = !process.argv.includes('--no-code-cache');
const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
const versionModule = path.join(repo, 'src/cli/version.ts');

/** Replaces src/cli/version.ts with a constant; fails the build if that module was never seen. */
function versionConstant() {
  let applied = false;
  return {
    name: 'ferrybus-version-constant',
    setup(b) {
      b.onLoad({ filter: /[\\/]src[\\/]cli[\\/]version\.ts$/ }, (args) => {
        if (path.resolve(args.path) !== versionModule) return undefined;
        applied = true;
        return { contents: `export const VERSION = ${JSON.stringify(pkg.version)};\n`, loader: 'ts' };
      });
      b.onEnd((result) => {
        if (result.errors.length === 0 && !applied) {
          result.errors.push({ text: `${path.relative(repo, versionModule)} was not part of the bundle: update scripts/bundle.mjs` });
        }
      });
    },
  };
}

/**
 * `import * as fs from 'node:fs'` becomes `fs = __toESM(require("node:fs"), 1)` in a CommonJS
 * bundle: a new object with one getter per export, made in every module that imports it (25
 * copies of node:fs's ~100 exports, ~6 ms of every start and handoff), and every `fs.x` after
 * that calls a getter. A built-in's module object already is what the namespace reads; the
 * bundle uses it as is. Only where the namespace is never asked for `default` (which only the
 * copy has): the build fails if one is.
 */
function withPlainBuiltins(text) {
  const wrapped = /(\w+) = __toESM\(require\("(node:[\w/]+)"\), 1\)/g;
  for (const [, name, id] of text.matchAll(wrapped)) {
    if (new RegExp(`\\b${name}\\.default\\b`).test(text)) throw new Error(`the bundle reads ${name}.default of ${id}: scripts/bundle.mjs cannot unwrap it`);
  }
  return text.replace(wrapped, (_, name, id) => `${name} = require("${id}")`);
}

fs.rmSync(outdir, { recursive: true, force: true });
fs.mkdirSync(outdir, { recursive: true });

const entry = path.join(outdir, 'ferrybus.cjs');
const legacyEntry = path.join(outdir, 'ferrybus.mjs');
const program = path.join(outdir, 'ferrybus-program.cjs');
const cacheFile = path.join(outdir, 'ferrybus-program.cache');
const vendor = path.join(outdir, 'ferrybus-vendor.cjs');
const vendorCacheFile = path.join(outdir, 'ferrybus-vendor.cache');
// Ties the loader, the program and the cache of one build together (V8 itself checks only the
// source's length, its own version and the flags).
const buildId = randomBytes(16).toString('hex');
/**
 * Packages the program loads only after the bus serves or for an operator's command: yargs (the
 * command-line parser: commands.ts) and winston (loaded once the bus serves, when it is idle:
 * logger.ts). They are half of the bundle's text, and every start and every handoff
 * reads the program whole before it runs (~7.5 ms per MB here, most of it page faults): they sit
 * in ferrybus-vendor.cjs, which the loader reads on the first require of one of them.
 */
const VENDOR_PACKAGES = ['yargs', 'winston', 'winston-transport'];
/**
 * The vendor file's exports: what the program's default import of each package gets (a default
 * import of a CommonJS package is its module.exports; yargs is an ES module, its default export).
 * Getters: a package is evaluated when first asked for, not when the file is loaded.
 */
const vendorEntry = [
  `module.exports = {`,
  `  get yargs() { return require('yargs').default; },`,
  `  get winston() { return require('winston'); },`,
  `  get 'winston-transport'() { return require('winston-transport'); },`,
  `};`,
  '',
].join('\n');
if (!VENDOR_PACKAGES.every((id) => vendorEntry.includes(`'${id}'`))) throw new Error('scripts/bundle.mjs: the vendor entry does not export every vendor package');

/** Builds one script of the bundle: a function expression over CommonJS's arguments, ASCII only, ending with the build id. */
async function buildScript({ outfile, entryPoints, stdin, external, plugins = [], title }) {
  await build({
    entryPoints,
    stdin,
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    external,
    // import() of an external package becomes a require() the loader answers: the program is
    // compiled by vm.Script, where a real import() has no loader to call.
    supported: { 'dynamic-import': false },
    plugins,
    legalComments: 'none',
    logLevel: 'warning',
    // ES modules inlined into a CommonJS file (yargs and its parser) ask import.meta for their
    // own URL; they get the file's, as they got the bundle's when it was one ES module.
    define: { 'import.meta.url': '__ferrybusImportMetaUrl', 'import.meta.resolve': '__ferrybusImportMetaResolve' },
    // The script is one function expression, as Node wraps a CommonJS module: the loader
    // compiles the file's text as it is (no second copy of it in the heap).
    banner: {
      js: [
        '(function (exports, require, module, __filename, __dirname) {',
        // Strict throughout, as when the bundle was an ES module.
        "'use strict';",
        `// ferrybus ${pkg.version}: ${title} (bundled by scripts/bundle.mjs; run by ferrybus.cjs)`,
        "const __ferrybusImportMetaUrl = require('node:url').pathToFileURL(__filename).href;",
        "const __ferrybusImportMetaResolve = (s) => require('node:url').pathToFileURL(require.resolve(s)).href;",
      ].join('\n'),
    },
    footer: { js: `//# ferrybus-build=${buildId}\n})` },
  });
  // ferrybus.ts starts with "#!/usr/bin/env node", which esbuild keeps first: before the
  // function it would be a syntax error.
  // The loader reads it as latin1 (a one-byte string at once, no UTF-8 decoding; a string with one
  // character beyond latin1 would take twice the memory): it must be ASCII. esbuild escapes every
  // other character in code (charset: 'ascii'); what is left is in comments, where '?' does as well.
  const text = withPlainBuiltins(fs.readFileSync(outfile, 'utf8').replace(/^#!/, '//').replace(/[^\x00-\x7f]/g, '?'));
  fs.writeFileSync(outfile, text);
  if (!text.endsWith(programEnd)) throw new Error(`${outfile} does not end with its build id: update scripts/bundle.mjs`);
  return text;
}
const programEnd = `//# ferrybus-build=${buildId}\n})\n`;
const programText = await buildScript({
  outfile: program,
  entryPoints: [path.join(repo, 'src/cli/ferrybus.ts')],
  external: ['koffi', ...VENDOR_PACKAGES],
  plugins: [versionConstant()],
  title: 'the program',
});
// esbuild leaves a package's subpaths external too; the loader answers only the names above.
for (const [, id] of programText.matchAll(/require\("([^"]+)"\)/g)) {
  if (VENDOR_PACKAGES.some((p) => id.startsWith(`${p}/`))) throw new Error(`the program requires ${id}: add it to VENDOR_PACKAGES and the vendor entry in scripts/bundle.mjs`);
}
await buildScript({
  outfile: vendor,
  stdin: { contents: vendorEntry, resolveDir: repo, sourcefile: 'ferrybus-vendor-entry.cjs', loader: 'js' },
  external: ['koffi'],
  title: `the packages the program loads late (${VENDOR_PACKAGES.join(', ')})`,
});

// The loader: the file every command line names.
/**
 * Node's modules a starting bus loads (process.moduleLoadList), the ones that load the rest;
 * child_process and net are loaded when first used (src/util/lazy-builtin.ts), fs/promises with
 * chokidar once the bus serves (src/supervisor/file-watch.ts), tty not at all.
 */
const PRELOADED_BUILTINS = ['node:os', 'node:string_decoder', 'node:stream'];
/** Where the bundle puts koffi's native build, relative to the loader. */
const KOFFI_NATIVE = 'node_modules/koffi/build/koffi/linux_x64/koffi.node';
/** The version of the koffi the bundle copies (its native build reports the same). */
function koffiVersion() {
  const koffiEntry = createRequire(path.join(repo, 'package.json')).resolve('koffi');
  return JSON.parse(fs.readFileSync(path.join(path.dirname(koffiEntry), 'package.json'), 'utf8')).version;
}
const loaderBody = (extra) => `'use strict';
// When node handed over to this file: the first mark of a handoff's phase report (src/util/start-marks.ts).
globalThis[Symbol.for('ferrybus.loaderStartedNs')] = process.hrtime.bigint();
// Node's modules by process.getBuiltinModule (node >= 20.16) where it exists: no resolution.
const builtin = process.getBuiltinModule ?? require;
const fs = builtin('node:fs');
const { createRequire } = builtin('node:module');
const path = builtin('node:path');
const vm = builtin('node:vm');
const v8 = builtin('node:v8');

const BUILD = ${JSON.stringify(buildId)};
const dir = __dirname;
const program = path.join(dir, 'ferrybus-program.cjs');
const cacheFile = path.join(dir, 'ferrybus-program.cache');
let source = fs.readFileSync(program, 'latin1');
let cachedData;
if (source.endsWith(${JSON.stringify(programEnd)})) {
  try {
    // The build id, then V8's cache. V8 checks its version, the flags and the source length.
    const cache = fs.readFileSync(cacheFile);
    if (cache.toString('latin1', 0, BUILD.length) === BUILD) cachedData = cache.subarray(BUILD.length);
  } catch {
    // no cache: compiled as without one
  }
}
// V8 verifies the cache's checksum only under this flag (a flipped bit could crash it, at every
// start): on while compiling, as when the cache was written, and off again, since node's own
// modules' code cache is taken only under the flags node was built with.
v8.setFlagsFromString('--verify-snapshot-checksum');
const script = new vm.Script(source, { filename: program, cachedData });
v8.setFlagsFromString('--no-verify-snapshot-checksum');
// V8 holds the source now; the cache's bytes are not needed once compiled.
source = cachedData = undefined;
// The young generation stays at its first size (see src/util/young-generation.ts), from before
// the program allocates. That changes V8's flag hash, and V8 takes node's code cache for its own
// modules only under the flags node was built with: the modules the bus needs are loaded first.
if (!process.execArgv.some((a) => /semi-space/.test(a))) {
  for (const m of ${JSON.stringify(PRELOADED_BUILTINS)}) builtin(m);
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}
// No optimizing compiler until the bus serves (src/util/start-up-compiler.ts turns it back on).
// An operator's command runs as node would run it (and compiles ferrybus-vendor.cjs under the
// flags its cache was written with: see vendorExports).
const OPT_ON_COMMAND_LINE = process.execArgv.some((a) => /^--(no-)?(opt|turbofan|maglev)(=|$)|^--max-opt(=|$)/.test(a));
if (process.argv[2] === 'daemon' && !OPT_ON_COMMAND_LINE) {
  v8.setFlagsFromString('--no-opt');
}
/**
 * The program's require, koffi excepted: its native build is loaded here, by the path this
 * bundle put it at. koffi's own entry point first looks for optional platform packages and reads
 * node's ELF header to choose a build (~10 ms of every start and handoff), a choice made when
 * the bundle was built. A native build of another version falls back to koffi's entry point.
 */
function programRequire(file) {
  const require = createRequire(file);
  let koffi;
  return Object.assign((id) => {
    if (VENDOR.has(id)) return vendorExports()[id];
    if (id !== 'koffi') return require(id);
    if (koffi === undefined) {
      const native = { exports: {} };
      process.dlopen(native, path.join(dir, ${JSON.stringify(KOFFI_NATIVE)}));
      koffi = native.exports.version === ${JSON.stringify(koffiVersion())} ? native.exports : require('koffi');
    }
    return koffi;
  }, require);
}
const VENDOR = new Set(${JSON.stringify(VENDOR_PACKAGES)});
let vendor;
let vendorScript;
/** ferrybus-vendor.cjs, read and run on the first require of one of its packages (see scripts/bundle.mjs). */
function vendorExports() {
  if (vendor !== undefined) return vendor.exports;
  const file = path.join(dir, 'ferrybus-vendor.cjs');
  // An operator's command reports this as one line (src/cli/cli-error.ts); the bus logs it and
  // logs on without winston (src/supervisor/logger.ts).
  const incomplete = (why) => Object.assign(new Error(\`\${file} \${why}: this installation of ferrybus is incomplete; reinstall it\`), { code: 'BundleIncomplete' });
  let text;
  try {
    text = fs.readFileSync(file, 'latin1');
  } catch (err) {
    throw incomplete(\`cannot be read (\${err.code ?? err.message})\`);
  }
  if (!text.endsWith(${JSON.stringify(programEnd)})) throw incomplete(\`is not from the build of \${program}\`);
  // Its code cache was written as a bus that serves runs (the optimizing compiler on, the young
  // generation capped), which is how a serving bus and an operator's command compile it.
  let cachedData;
  try {
    const cache = fs.readFileSync(path.join(dir, 'ferrybus-vendor.cache'));
    if (cache.toString('latin1', 0, BUILD.length) === BUILD) cachedData = cache.subarray(BUILD.length);
  } catch {
    // no cache: compiled as without one
  }
  v8.setFlagsFromString('--verify-snapshot-checksum');
  vendorScript = new vm.Script(text, { filename: file, cachedData });
  v8.setFlagsFromString('--no-verify-snapshot-checksum');
  vendor = { exports: {}, filename: file, id: file };
  vendorScript.runInThisContext()(vendor.exports, createRequire(file), vendor, file, dir);
  return vendor.exports;
}
const programModule = { exports: {}, filename: program, id: '.' };
${extra}script.runInThisContext()(programModule.exports, programRequire(program), programModule, program, dir);
`;
fs.writeFileSync(entry, [
  '#!/usr/bin/env node',
  `// ferrybus ${pkg.version} (bundled by scripts/bundle.mjs): runs ferrybus-program.cjs beside it, compiled`,
  '// with the V8 code cache ferrybus-program.cache when V8 takes it (see scripts/bundle.mjs).',
  loaderBody(''),
].join('\n'));
// The file is always run as `node ferrybus.cjs` (argv[1] must be the entry), so the mode is informative.
fs.chmodSync(entry, 0o755);
// A command line written for an earlier release names ferrybus.mjs: it runs the same loader (and
// pays node's ES module loader once; a handoff execs the entry its command line named).
fs.writeFileSync(legacyEntry, [
  '#!/usr/bin/env node',
  `// ferrybus ${pkg.version}: the entry of earlier releases; the bundle's entry is ferrybus.cjs beside it.`,
  "import './ferrybus.cjs';",
  '',
].join('\n'));
fs.chmodSync(legacyEntry, 0o755);

// --- koffi, linux-x64 glibc only ---------------------------------------------------------------
const require = createRequire(path.join(repo, 'package.json'));
// koffi's "exports" hides package.json; its main entry sits at the package root.
const koffiDir = path.dirname(require.resolve('koffi'));
const koffiPkg = JSON.parse(fs.readFileSync(path.join(koffiDir, 'package.json'), 'utf8'));
const koffiOut = path.join(outdir, 'node_modules/koffi');

/** The native build: the platform package when installed, else koffi's own build folder. */
function nativeBuild() {
  const candidates = [
    path.join(koffiDir, '..', '@koromix', 'koffi-linux-x64', 'linux_x64', 'koffi.node'),
    path.join(koffiDir, 'build', 'koffi', 'linux_x64', 'koffi.node'),
  ];
  const found = candidates.find((f) => fs.existsSync(f));
  if (!found) throw new Error(`no linux_x64 koffi.node found (looked at ${candidates.join(', ')})`);
  return found;
}

function copy(from, to) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(from, to);
}

// koffi's entry (index.js) re-exports src/koffi/index.js, which imports src/koffi/src/static.js
// and, failing the platform package, loads <koffi>/build/koffi/<triplet>/koffi.node.
const entryFiles = ['index.js', 'index.cjs', 'src/koffi/index.js', 'src/koffi/index.cjs', 'src/koffi/src/static.js', 'src/koffi/src/static.cjs', 'LICENSE.txt'];
for (const rel of entryFiles) {
  const from = path.join(koffiDir, rel);
  if (fs.existsSync(from)) copy(from, path.join(koffiOut, rel));
  else if (!rel.endsWith('.cjs') && !rel.endsWith('.txt')) throw new Error(`koffi ${koffiPkg.version}: ${rel} is missing; update scripts/bundle.mjs`);
}
copy(nativeBuild(), path.join(outdir, KOFFI_NATIVE));
// A trimmed package.json: no install script, no optional platform packages to look for.
const { name, version, license, type, main, module: esm, exports } = koffiPkg;
fs.writeFileSync(path.join(koffiOut, 'package.json'),
  JSON.stringify({ name, version, license, type, main, module: esm, exports }, null, 2) + '\n');

// --- the code cache ------------------------------------------------------------------------------
/** The node flags the unit starts the bus with (between '@ferrybus' and the entry in ExecStart=). */
function unitNodeFlags() {
  const unit = fs.readFileSync(path.join(repo, 'systemd/ferrybus.service'), 'utf8');
  const words = /^ExecStart=(.*)$/m.exec(unit)?.[1].trim().split(/\s+/) ?? [];
  const from = words.indexOf('@ferrybus');
  const to = words.findIndex((w) => w.endsWith('/ferrybus.cjs'));
  if (from < 0 || to < from) throw new Error('systemd/ferrybus.service: ExecStart= is not "@node @ferrybus [flags] .../ferrybus.cjs ...": update scripts/bundle.mjs');
  return words.slice(from + 1, to);
}

/** Whether a node started with `nodeFlags`, after setting `runtimeFlags`, compiles `script` with `cache` (past its build id). */
function cacheAccepted(nodeFlags, runtimeFlags, script, cache) {
  const check = [
    "const fs = require('node:fs'); const vm = require('node:vm'); const v8 = require('node:v8');",
    ...[...runtimeFlags, '--verify-snapshot-checksum'].map((f) => `v8.setFlagsFromString(${JSON.stringify(f)});`),
    `const cache = fs.readFileSync(${JSON.stringify(cache)}).subarray(${buildId.length});`,
    `const s = new vm.Script(fs.readFileSync(${JSON.stringify(script)}, 'latin1'), { filename: ${JSON.stringify(script)}, cachedData: cache });`,
    'process.exit(s.cachedDataRejected ? 1 : 0);',
  ].join('\n');
  return new Promise((resolve) => spawn(process.execPath, [...nodeFlags, '-e', check], { stdio: 'ignore' }).on('exit', (c) => resolve(c === 0)));
}

/**
 * Runs the program once as the unit would (a bus on a temporary socket, started, asked for
 * nothing, stopped with SIGTERM) through a loader that writes the cache on exit: what was
 * compiled by then, the whole start path included, is in it.
 */
async function writeCodeCache() {
  const writer = path.join(outdir, '.ferrybus-cache-writer.cjs');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferrybus-cache-'));
  const flags = unitNodeFlags();
  fs.writeFileSync(writer, loaderBody(
    "process.once('exit', () => {\n" +
    // The bus changes one V8 flag once it serves (src/util/young-generation.ts), and V8 stamps
    // a cache with the flags of the moment: back to V8's default, as at the next start.
    (flags.some((f) => /semi-space/.test(f)) ? '' : "  v8.setFlagsFromString('--semi-space-growth-factor=2');\n") +
    // With its checksum, which the loader has V8 verify.
    "  v8.setFlagsFromString('--verify-snapshot-checksum');\n" +
    '  const data = script.createCachedData();\n' +
    "  fs.writeFileSync(cacheFile, Buffer.concat([Buffer.from(BUILD, 'latin1'), data]));\n" +
    // The late packages, evaluated if the run did not, under the flags of a serving bus.
    (flags.some((f) => /semi-space/.test(f)) ? '' : "  v8.setFlagsFromString('--semi-space-growth-factor=1');\n") +
    "  if (!OPT_ON_COMMAND_LINE) v8.setFlagsFromString('--opt');\n" +
    '  const late = vendorExports();\n' +
    '  for (const id of VENDOR) void late[id];\n' +
    "  v8.setFlagsFromString('--verify-snapshot-checksum');\n" +
    "  fs.writeFileSync(path.join(dir, 'ferrybus-vendor.cache'), Buffer.concat([Buffer.from(BUILD, 'latin1'), vendorScript.createCachedData()]));\n" +
    '});\n'));
  try {
    const child = spawn(process.execPath, [...flags, writer, 'daemon', '--nofork', '--print-address=1', `--address=unix:path=${path.join(tmp, 'bus')}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FERRYBUS_LOG_LEVEL: 'info' },
    });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.stdout.on('data', (d) => {
        if (String(d).includes('\n')) child.kill('SIGTERM');
      });
      child.on('error', reject);
      child.on('exit', (c, signal) => {
        clearTimeout(timer);
        resolve(signal ?? c);
      });
    });
    if (code !== 0 || !fs.existsSync(cacheFile) || !fs.existsSync(vendorCacheFile)) throw new Error(`the program exited with ${code}: ${err.trim().split('\n').slice(-3).join(' | ')}`);
    // V8 must take each cache under the flags it is compiled with (it says so only by compiling
    // with it): the program's at start, the vendor file's as a serving bus runs.
    if (!(await cacheAccepted(flags, [], program, cacheFile))) throw new Error('V8 refuses the cache it wrote (a V8 flag changed during the run?)');
    const servingFlags = flags.some((f) => /semi-space/.test(f)) ? [] : ['--semi-space-growth-factor=1'];
    if (!(await cacheAccepted(flags, servingFlags, vendor, vendorCacheFile))) throw new Error('V8 refuses the cache of ferrybus-vendor.cjs it wrote');
    return flags;
  } finally {
    fs.rmSync(writer, { force: true });
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

let cacheNote = 'no code cache (--no-code-cache)';
if (withCodeCache) {
  try {
    const flags = await writeCodeCache();
    cacheNote = `code caches ${(fs.statSync(cacheFile).size / 1024).toFixed(0)} + ${(fs.statSync(vendorCacheFile).size / 1024).toFixed(0)} KiB for node ${process.version}${flags.length ? ' ' + flags.join(' ') : ''}`;
  } catch (err) {
    // The bundle works without it, only slower to start.
    fs.rmSync(cacheFile, { force: true });
    fs.rmSync(vendorCacheFile, { force: true });
    cacheNote = 'no code cache';
    process.stderr.write(`bundle: could not write the code cache (${err.message}); the bundle starts without it\n`);
  }
}

const size = (f) => fs.statSync(f).size;
const nativeFile = path.join(outdir, KOFFI_NATIVE);
process.stdout.write(
  `bundled ferrybus ${pkg.version}: ${path.relative(repo, program)} (${(size(program) / 1024).toFixed(0)} KiB), ${cacheNote}, ` +
  `koffi ${koffiPkg.version} (${(size(nativeFile) / 1024).toFixed(0)} KiB native)\n`,
);
