/**
 * The report of bench/initramfs.sh: what a D-Bus module adds to a compressed initramfs, and the
 * boot timeline read from serial logs.
 *
 *   node initramfs-report.mjs --work=DIR --out=FILE [--node=BIN] [--broker-version=V]
 *        [--serial-log=FILE] [--boot-log=NAME=FILE]...
 *
 * DIR holds what bench/initramfs.sh built: NAME.img (baseline, dbus-broker, ferrybus), NAME.modules
 * (lsinitrd's module list) and `builds` (name, dracut wall ms, kernel). Each image is decompressed
 * with `zstd -dc` and its cpio (newc) archive parsed here; nothing is unpacked. A file is "added"
 * by a variant when the baseline lacks its path or has other bytes at it. Each added file is then
 * compressed alone with the image's compressor (zstd -15 -T0) for its share of the compressed
 * delta; alone it compresses a little worse than inside the archive, so the shares are of the sum
 * of those sizes.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const COMPRESSOR = ['zstd', '-15', '-q', '-T0'] as const;
export const VARIANTS = ['baseline', 'dbus-broker', 'ferrybus'] as const;
export type Variant = (typeof VARIANTS)[number];

export interface CpioEntry {
  path: string;
  mode: number;
  /** bytes stored for this entry (the link target for a symlink; 0 for a directory) */
  size: number;
  data: Buffer;
}

/** The entries of a newc ("070701") cpio archive, or of several concatenated ones. */
export function parseNewc(buf: Buffer): CpioEntry[] {
  const entries: CpioEntry[] = [];
  let off = 0;
  const align4 = (n: number) => (n + 3) & ~3;
  while (off + 110 <= buf.length) {
    const magic = buf.toString('latin1', off, off + 6);
    if (magic !== '070701' && magic !== '070702') {
      // Zero padding between concatenated archives.
      if (buf[off] === 0) {
        off++;
        continue;
      }
      throw new Error(`cpio: bad magic at ${off}: ${JSON.stringify(magic)}`);
    }
    const field = (i: number) => parseInt(buf.toString('latin1', off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString('utf8', off + 110, off + 110 + nameSize - 1);
    const dataOff = align4(off + 110 + nameSize);
    off = align4(dataOff + size);
    if (name === 'TRAILER!!!') continue;
    entries.push({ path: name.replace(/^\.\//, ''), mode, size, data: buf.subarray(dataOff, dataOff + size) });
  }
  return entries;
}

const S_IFMT = 0o170000;
const kindOf = (mode: number) =>
  (mode & S_IFMT) === 0o040000 ? 'dir' : (mode & S_IFMT) === 0o120000 ? 'symlink' : (mode & S_IFMT) === 0o100000 ? 'file' : 'other';

export interface ImageStat {
  name: Variant;
  /** dracut modules as lsinitrd lists them */
  modules: string[];
  /** the image file (compressed) */
  compressedBytes: number;
  /** the decompressed cpio archive */
  cpioBytes: number;
  /** regular files, their bytes (what the unpacked image holds in /run/initramfs or rootfs) */
  files: number;
  fileBytes: number;
  entries: number;
  dracutSeconds: number;
}

export interface AddedFile {
  path: string;
  kind: string;
  /** 'added' (not in the baseline) or 'changed' (other bytes than the baseline's) */
  how: 'added' | 'changed';
  bytes: number;
  /** the file compressed alone with COMPRESSOR (for a changed file: minus the baseline's) */
  zstdBytes: number;
  group: string;
}

export interface GroupStat {
  group: string;
  files: number;
  bytes: number;
  zstdBytes: number;
  /** zstdBytes / the sum over every added file */
  zstdShare: number;
}

export interface Delta {
  variant: Variant;
  compressedBytes: number;
  cpioBytes: number;
  fileBytes: number;
  files: number;
  modulesAdded: string[];
  /** the sum of zstdBytes of every added file (≈ compressedBytes) */
  zstdAloneBytes: number;
  groups: GroupStat[];
  /** every added or changed file, biggest compressed first */
  added: AddedFile[];
}

export interface Milestone {
  id: string;
  label: string;
  /** kernel printk time, seconds since the kernel started */
  t: number | null;
  line?: string;
}

export interface Timeline {
  source: string;
  variant: Variant | 'vm-test';
  milestones: Milestone[];
}

export interface InitramfsResult {
  date: string;
  host: { cpus: number; loadavg: number[]; kernel: string };
  guestKernel: string;
  compression: string;
  dracutOptions: string;
  baseModules: string;
  node: { path: string; version: string } | null;
  dbusBrokerVersion: string | null;
  images: ImageStat[];
  deltas: Delta[];
  timelines: Timeline[];
}

/** Which part of a bus a file is; the first rule that matches wins. */
const GROUPS: [string, RegExp][] = [
  ['node binary', /^usr\/bin\/node$/],
  // The entry (ferrybus.cjs, and ferrybus.mjs for earlier command lines), the program and its code cache.
  ['ferrybus bundle', /^usr\/lib\/ferrybus\/ferrybus(-program)?\.(cjs|mjs|cache)$/],
  ['koffi (native + JS)', /^usr\/lib\/ferrybus\/node_modules\//],
  ['ferrybus helpers and dracut hooks', /^usr\/lib\/ferrybus\/|^var\/lib\/dracut\/hooks\/|^usr\/lib\/dracut\/hooks\//],
  ['bus binaries', /^usr\/(s?bin|lib\/systemd)\/(dbus-broker[^/]*|dbus-daemon)$/],
  ['shared libraries', /(^|\/)lib[^/]*\.so(\.[0-9.]+)?$/],
  ['systemd units and links', /\/systemd\/(system|user)(\/|$)|\.(service|socket|target)$/],
  ['D-Bus configuration and users', /^(usr\/share|etc)\/dbus-1(\/|$)|sysusers\.d\/|^etc\/(passwd|group|shadow|gshadow)$/],
  ['journal catalogs', /^usr\/lib\/systemd\/catalog(\/|$)/],
  ['programs', /^usr\/(s?bin|lib\/systemd)\//],
  ['dracut module lists and logs', /^usr\/lib\/dracut\//],
];
const groupOf = (p: string) => GROUPS.find(([, re]) => re.test(p))?.[0] ?? 'other';

function zstdAlone(data: Buffer): number {
  if (data.length === 0) return 0;
  return execFileSync(COMPRESSOR[0], [...COMPRESSOR.slice(1), '-c'], { input: data, maxBuffer: 1 << 30 }).length;
}

function readImage(file: string): { cpio: Buffer; entries: CpioEntry[] } {
  const cpio = execFileSync('zstd', ['-dc', file], { maxBuffer: 2 ** 31 });
  return { cpio, entries: parseNewc(cpio) };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function imageStat(name: Variant, work: string, img: { cpio: Buffer; entries: CpioEntry[] }, dracutMs: Map<string, number>): ImageStat {
  const files = img.entries.filter((e) => kindOf(e.mode) === 'file');
  return {
    name,
    modules: readFileSync(path.join(work, `${name}.modules`), 'utf8').split('\n').filter(Boolean),
    compressedBytes: statSync(path.join(work, `${name}.img`)).size,
    cpioBytes: img.cpio.length,
    files: files.length,
    fileBytes: files.reduce((s, e) => s + e.size, 0),
    entries: img.entries.length,
    dracutSeconds: (dracutMs.get(name) ?? NaN) / 1000,
  };
}

function delta(variant: Variant, stat: ImageStat, base: ImageStat, entries: CpioEntry[], baseEntries: CpioEntry[]): Delta {
  const baseBy = new Map(baseEntries.map((e) => [e.path, e]));
  const added: AddedFile[] = [];
  for (const e of entries) {
    const kind = kindOf(e.mode);
    const b = baseBy.get(e.path);
    if (b && (kind === 'dir' || (b.size === e.size && sha(b.data) === sha(e.data)))) continue;
    const z = zstdAlone(e.data) - (b ? zstdAlone(b.data) : 0);
    added.push({ path: e.path, kind, how: b ? 'changed' : 'added', bytes: e.size - (b?.size ?? 0), zstdBytes: z, group: groupOf(e.path) });
  }
  added.sort((x, y) => y.zstdBytes - x.zstdBytes || y.bytes - x.bytes);
  const zstdAloneBytes = added.reduce((s, f) => s + f.zstdBytes, 0);
  const groups = new Map<string, GroupStat>();
  for (const f of added) {
    const g = groups.get(f.group) ?? { group: f.group, files: 0, bytes: 0, zstdBytes: 0, zstdShare: 0 };
    if (f.kind === 'file') g.files++;
    g.bytes += f.bytes;
    g.zstdBytes += f.zstdBytes;
    groups.set(f.group, g);
  }
  for (const g of groups.values()) g.zstdShare = zstdAloneBytes ? g.zstdBytes / zstdAloneBytes : 0;
  return {
    variant,
    compressedBytes: stat.compressedBytes - base.compressedBytes,
    cpioBytes: stat.cpioBytes - base.cpioBytes,
    fileBytes: stat.fileBytes - base.fileBytes,
    files: stat.files - base.files,
    modulesAdded: stat.modules.filter((m) => !base.modules.includes(m)),
    zstdAloneBytes,
    groups: [...groups.values()].sort((x, y) => y.zstdBytes - x.zstdBytes),
    added,
  };
}

/**
 * Milestones of a boot, from the serial console: lines with the kernel's printk time only
 * (systemd's status lines have none). Switch-root is systemd's second start banner; an `initrd`
 * milestone is the first match before it, a `realroot` one the first match after it.
 */
const MILESTONES: { id: string; label: string; re: RegExp; phase?: 'initrd' | 'realroot' }[] = [
  { id: 'init', label: 'kernel runs /init (initrd)', re: /Run \/init as init process/ },
  { id: 'initrd-systemd', label: 'systemd starts in the initrd', re: /systemd\[1\]: systemd \d+\S* running in system mode/ },
  { id: 'initrd-socket', label: 'initrd: bus socket listening (systemd)', re: /Listening on (dbus|ferrybus)\.socket/, phase: 'initrd' },
  { id: 'initrd-bus-start', label: 'initrd: bus service starting', re: /Starting (dbus-broker|ferrybus|dbus)\.service/, phase: 'initrd' },
  {
    id: 'initrd-bus-ready',
    label: 'initrd: bus ready (ferrybus "listening" / systemd "Started dbus-broker")',
    re: /ferrybus\[\d+\]: listening: bus is listening|Started (dbus-broker|ferrybus)\.service/,
    phase: 'initrd',
  },
  { id: 'initrd-probe', label: 'initrd: VM test probe done', re: /FERRYBUS-VM DONE initrd/, phase: 'initrd' },
  { id: 'initrd-target', label: 'initrd.target reached', re: /Reached target initrd\.target/, phase: 'initrd' },
  { id: 'switch-root', label: 'switch-root: systemd re-executes in the real root', re: /^$/ },
  { id: 'realroot-bus-start', label: 'real root: bus service starting', re: /Starting (dbus-broker|ferrybus-root|ferrybus)\.service/, phase: 'realroot' },
  {
    id: 'realroot-bus',
    label: 'real root: system bus up (ferrybus handoff complete / dbus-broker started)',
    re: /handoff-complete: handoff complete|Started dbus-broker\.service/,
    phase: 'realroot',
  },
  { id: 'realroot-probe', label: 'real root: VM test probe done', re: /FERRYBUS-VM DONE realroot/, phase: 'realroot' },
  { id: 'multi-user', label: 'multi-user.target reached', re: /Reached target multi-user\.target|INITRAMFS-BENCH multi-user/, phase: 'realroot' },
  { id: 'bus-answered', label: 'real root: busctl call answered', re: /INITRAMFS-BENCH bus-answered/, phase: 'realroot' },
  { id: 'shutdown-probe', label: 'shutdown: VM test probe done', re: /FERRYBUS-VM DONE shutdown/, phase: 'realroot' },
  { id: 'exitrd-probe', label: 'shutdown root: VM test probe done (the last DONE marker)', re: /FERRYBUS-VM DONE exitrd/, phase: 'realroot' },
  { id: 'power-down', label: 'reboot: Power down', re: /reboot: Power down/ },
];

export function parseTimeline(text: string, source: string, variant: Timeline['variant']): Timeline {
  const lines: { t: number; text: string }[] = [];
  for (const raw of text.replace(/\r/g, '').split('\n')) {
    const m = /^\[\s*(\d+\.\d+)\]\s?(.*)$/.exec(raw);
    if (m) lines.push({ t: Number(m[1]), text: m[2]! });
  }
  const banners = lines.filter((l) => /systemd\[1\]: systemd \d+\S* running in system mode/.test(l.text));
  const switchRoot = banners[1];
  const milestones: Milestone[] = [];
  for (const ms of MILESTONES) {
    let hit: { t: number; text: string } | undefined;
    if (ms.id === 'switch-root') hit = switchRoot;
    else if (ms.phase === 'realroot') hit = switchRoot && lines.find((l) => l.t > switchRoot.t && ms.re.test(l.text));
    else hit = lines.find((l) => (ms.phase !== 'initrd' || !switchRoot || l.t < switchRoot.t) && ms.re.test(l.text));
    milestones.push({ id: ms.id, label: ms.label, t: hit?.t ?? null, ...(hit ? { line: hit.text.slice(0, 200) } : {}) });
  }
  return { source, variant, milestones };
}

const kib = (n: number) => `${(n / 1024).toFixed(0)} KiB`;
const mib = (n: number) => `${(n / 1048576).toFixed(2)} MiB`;
const signed = (n: number, f: (n: number) => string) => (n >= 0 ? '+' : '−') + f(Math.abs(n));

/** The result as Markdown: sizes, deltas, the groups and biggest files ferrybus adds, timelines. */
export function initramfsMarkdown(r: InitramfsResult, topFiles = 12): string {
  const out: string[] = [];

  out.push(`Compression: ${r.compression}; dracut ${r.dracutOptions}; guest kernel ${r.guestKernel}.`);
  out.push('');
  out.push('| image | compressed | Δ compressed | uncompressed (cpio) | Δ uncompressed | files | Δ files | dracut s |');
  out.push('|---|---|---|---|---|---|---|---|');
  for (const i of r.images) {
    const d = r.deltas.find((x) => x.variant === i.name);
    out.push(
      `| ${i.name} | ${mib(i.compressedBytes)} | ${d ? signed(d.compressedBytes, mib) : '—'} | ${mib(i.cpioBytes)} | ${d ? signed(d.cpioBytes, mib) : '—'} | ${i.files} | ${d ? signed(d.files, String) : '—'} | ${i.dracutSeconds.toFixed(1)} |`,
    );
  }
  out.push('');
  for (const d of r.deltas) out.push(`Modules ${d.variant} adds to the baseline: ${d.modulesAdded.join(', ')}.`);
  for (const d of r.deltas) {
    out.push('');
    out.push(`What ${d.variant} adds, by group (each file compressed alone; Σ ${mib(d.zstdAloneBytes)} vs ${mib(d.compressedBytes)} in the image):`);
    out.push('');
    out.push('| group | files | bytes | compressed alone | share |');
    out.push('|---|---|---|---|---|');
    for (const g of d.groups) out.push(`| ${g.group} | ${g.files} | ${kib(g.bytes)} | ${kib(g.zstdBytes)} | ${(g.zstdShare * 100).toFixed(1)}% |`);
  }
  const fb = r.deltas.find((d) => d.variant === 'ferrybus');
  if (fb) {
    out.push('');
    out.push(`The ${topFiles} biggest files ferrybus adds (compressed alone):`);
    out.push('');
    out.push('| file | bytes | compressed alone | share of the delta |');
    out.push('|---|---|---|---|');
    for (const f of fb.added.slice(0, topFiles)) {
      out.push(`| ${f.path}${f.how === 'changed' ? ' (changed)' : ''} | ${kib(f.bytes)} | ${kib(f.zstdBytes)} | ${((f.zstdBytes / fb.zstdAloneBytes) * 100).toFixed(1)}% |`);
    }
  }
  if (r.timelines.length) {
    out.push('');
    out.push(`Boot timelines (kernel printk time, s; ${r.timelines.map((t) => `${t.variant}: ${t.source}`).join('; ')}):`);
    out.push('');
    out.push(`| milestone | ${r.timelines.map((t) => t.variant).join(' | ')} |`);
    out.push(`|---|${r.timelines.map(() => '---').join('|')}|`);
    for (const ms of MILESTONES) {
      const cells = r.timelines.map((t) => t.milestones.find((m) => m.id === ms.id)?.t);
      if (cells.every((c) => c == null)) continue;
      out.push(`| ${ms.label} | ${cells.map((c) => (c == null ? '—' : c.toFixed(2))).join(' | ')} |`);
    }
  }
  return out.join('\n');
}

function main(argv: string[]): void {
  const opt = new Map<string, string>();
  const bootLogs: [string, string][] = [];
  for (const a of argv) {
    const m = /^--([a-z-]+)=(.*)$/s.exec(a);
    if (!m) throw new Error(`initramfs-report: bad argument ${a}`);
    if (m[1] === 'boot-log') {
      const [name, file] = m[2]!.split(/=(.*)/s, 2) as [string, string];
      bootLogs.push([name, file]);
    } else opt.set(m[1]!, m[2]!);
  }
  const work = opt.get('work');
  const outFile = opt.get('out');
  if (!work || !outFile) throw new Error('initramfs-report: --work and --out are required');
  const builds = new Map<string, number>();
  let guestKernel = '';
  for (const line of readFileSync(path.join(work, 'builds'), 'utf8').split('\n').filter(Boolean)) {
    const [name, ms, kver] = line.split('\t');
    builds.set(name!, Number(ms));
    guestKernel = kver!;
  }
  const images = new Map<Variant, { cpio: Buffer; entries: CpioEntry[] }>();
  const stats: ImageStat[] = [];
  for (const v of VARIANTS) {
    const img = readImage(path.join(work, `${v}.img`));
    images.set(v, img);
    stats.push(imageStat(v, work, img, builds));
  }
  const base = stats[0]!;
  const deltas = VARIANTS.slice(1).map((v, i) => delta(v, stats[i + 1]!, base, images.get(v)!.entries, images.get('baseline')!.entries));
  const timelines: Timeline[] = [];
  const serial = opt.get('serial-log');
  if (serial) timelines.push(parseTimeline(readFileSync(serial, 'latin1'), serial, 'vm-test'));
  for (const [name, file] of bootLogs) timelines.push(parseTimeline(readFileSync(file, 'latin1'), `bench boot (${path.basename(file)})`, name as Variant));
  const nodeBin = opt.get('node');
  const result: InitramfsResult = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100), kernel: os.release() },
    guestKernel,
    compression: `${COMPRESSOR.join(' ')} (dracut --zstd, as the VM test)`,
    dracutOptions: '--no-hostonly --no-early-microcode --zstd --drivers "virtio_pci virtio_blk ext4"',
    baseModules: 'systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules kernel-modules shutdown',
    node: nodeBin ? { path: nodeBin, version: execFileSync(nodeBin, ['--version'], { encoding: 'utf8' }).trim() } : null,
    dbusBrokerVersion: opt.get('broker-version') || null,
    images: stats,
    deltas,
    timelines,
  };
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(initramfsMarkdown(result) + '\n');
}

if (process.argv[1] && /initramfs(-report)?\.(m?js|ts)$/.test(process.argv[1])) main(process.argv.slice(2));
