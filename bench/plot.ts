// Line plots as PNG files, drawn by gnuplot (Debian package gnuplot-nox): the bench's plots are
// a by-product of its tables, so a missing gnuplot costs the picture, never the numbers.
import { execFileSync } from 'node:child_process';

export interface Series {
  name: string;
  /** [x, y] pairs, in the order they are drawn. */
  points: ReadonlyArray<readonly [number, number]>;
}

export interface PlotSpec {
  file: string;
  title: string;
  xLabel: string;
  yLabel: string;
  logX?: boolean;
  logY?: boolean;
  series: readonly Series[];
}

/** Writes the plot; returns undefined when written, else why not (gnuplot missing or failing). */
export function writePlot(spec: PlotSpec): string | undefined {
  const drawn = spec.series.filter((s) => s.points.length > 0);
  if (drawn.length === 0) return 'nothing to plot';
  const quote = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;
  const lines = [
    'set terminal pngcairo size 900,620 font "sans,10"',
    `set output ${quote(spec.file)}`,
    `set title ${quote(spec.title)}`,
    `set xlabel ${quote(spec.xLabel)}`,
    `set ylabel ${quote(spec.yLabel)}`,
    'set key below',
    'set grid',
    spec.logX ? 'set logscale x' : '',
    spec.logY ? 'set logscale y' : '',
    'plot ' + drawn.map((s) => `'-' using 1:2 with linespoints lw 2 title ${quote(s.name)}`).join(', '),
  ];
  for (const s of drawn) {
    for (const [x, y] of s.points) lines.push(`${x} ${y}`);
    lines.push('e');
  }
  try {
    execFileSync('gnuplot', [], { input: lines.filter(Boolean).join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'] });
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
    if (e.code === 'ENOENT') return 'gnuplot is not installed (Debian package gnuplot-nox)';
    return `gnuplot failed: ${e.stderr?.toString().trim() || e.message}`;
  }
}
