#!/usr/bin/env node
// Builds the self-contained ferrybus image that the initrd, the real root and the shutdown
// root all run: dist/bundle/ferrybus.mjs (one ESM file, every dependency inlined except koffi)
// plus dist/bundle/node_modules/koffi holding only what linux-x64/glibc needs (its package.json,
// its JS entry points and the linux_x64 native build). No other node_modules tree is needed.
//
// Why koffi stays external: it loads a native .node file by path relative to its own module;
// inlined, that path would point nowhere. Copied beside the bundle, Node's resolution
// (dist/bundle/node_modules/koffi) finds it, and koffi's own loader finds the native build at
// node_modules/koffi/build/koffi/linux_x64/koffi.node.
//
// Why the version is replaced: src/cli/version.ts reads ../../../package.json at run time,
// relative to the compiled file; inside the bundle no package.json is there. The bundle gets
// `export const VERSION = "<package.json version>"` instead, fixed at bundle time; the
// unbundled build (tsc) keeps reading package.json as before.
//
// Usage: node scripts/bundle.mjs [--outdir DIR]   (default dist/bundle)

import { build } from 'esbuild';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outdirFlag = process.argv.indexOf('--outdir');
const outdir = path.resolve(outdirFlag >= 0 ? process.argv[outdirFlag + 1] : path.join(repo, 'dist/bundle'));
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

fs.rmSync(outdir, { recursive: true, force: true });
fs.mkdirSync(outdir, { recursive: true });

const outfile = path.join(outdir, 'ferrybus.mjs');
await build({
  entryPoints: [path.join(repo, 'src/cli/ferrybus.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['koffi'],
  plugins: [versionConstant()],
  legalComments: 'none',
  logLevel: 'warning',
  // CommonJS dependencies (winston, yargs' helpers, …) call require() for Node built-ins;
  // an ESM bundle has no require of its own, so give it one.
  banner: {
    js: [
      '// ferrybus ' + pkg.version + ' (bundled by scripts/bundle.mjs)',
      "import { createRequire as __ferrybusCreateRequire } from 'node:module';",
      'const require = __ferrybusCreateRequire(import.meta.url);',
    ].join('\n'),
  },
});
// main.ts starts with "#!/usr/bin/env node"; esbuild keeps the hashbang first, but the file is
// always run as `node ferrybus.mjs` (argv[1] must be the bundle), so the mode is informative.
fs.chmodSync(outfile, 0o755);

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
copy(nativeBuild(), path.join(koffiOut, 'build/koffi/linux_x64/koffi.node'));
// A trimmed package.json: no install script, no optional platform packages to look for.
const { name, version, license, type, main, module: esm, exports } = koffiPkg;
fs.writeFileSync(path.join(koffiOut, 'package.json'),
  JSON.stringify({ name, version, license, type, main, module: esm, exports }, null, 2) + '\n');

const size = (f) => fs.statSync(f).size;
const nativeFile = path.join(koffiOut, 'build/koffi/linux_x64/koffi.node');
process.stdout.write(
  `bundled ferrybus ${pkg.version}: ${path.relative(repo, outfile)} (${(size(outfile) / 1024).toFixed(0)} KiB), ` +
  `koffi ${koffiPkg.version} (${(size(nativeFile) / 1024).toFixed(0)} KiB native)\n`,
);
