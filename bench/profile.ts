import path from 'node:path';

/** The parts of a V8 .cpuprofile (as written by node --cpu-prof) used here. */
export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
    children?: number[];
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  sampledMs: number;
  busyMs: number;
  idleMs: number;
  /** Aggregated by function (name + location); percentages of busy (non-idle) time. */
  functions: { name: string; location: string; selfMs: number; selfPct: number; totalPct: number }[];
  files: { file: string; selfMs: number; selfPct: number }[];
}

/**
 * Self and inclusive time per function from a .cpuprofile, optionally only for samples taken
 * within `window` (microseconds, the profile's clock: CLOCK_MONOTONIC). Locations of the compiled files
 * are shown as their TypeScript source (dist/src/x.js → src/x.ts, line of the .js).
 */
export function summarizeProfile(p: CpuProfile, repoRoot: string, window?: [number, number]): ProfileSummary {
  const parent = new Map<number, number>();
  const byId = new Map<number, CpuProfile['nodes'][number]>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const fileOf = (url: string): string => {
    if (!url) return '(native)';
    let f = url.startsWith('file://') ? decodeURIComponent(url.slice(7)) : url;
    if (f.startsWith(repoRoot)) {
      f = path.relative(repoRoot, f);
      const m = /^dist\/(src|bench|test)\/(.*)\.js$/.exec(f);
      if (m) f = `${m[1]}/${m[2]}.ts (js)`;
    }
    return f;
  };
  const keyOf = (id: number) => {
    const cf = byId.get(id)!.callFrame;
    const name = cf.functionName || '(anonymous)';
    return { key: `${name}\0${cf.url}\0${cf.lineNumber}`, name, location: cf.url ? `${fileOf(cf.url)}:${cf.lineNumber + 1}` : '(native)', file: fileOf(cf.url) };
  };

  // Sample i lasts until sample i+1 (what DevTools does); the last one gets the mean.
  const n = p.samples.length;
  const durations = new Array<number>(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    durations[i] = i + 1 < n ? p.timeDeltas[i + 1]! : 0;
    sum += durations[i]!;
  }
  if (n > 1) durations[n - 1] = sum / (n - 1);

  const self = new Map<string, { name: string; location: string; us: number }>();
  const total = new Map<string, number>();
  const files = new Map<string, number>();
  let idleUs = 0;
  let allUs = 0;
  let at = p.startTime;
  for (let i = 0; i < n; i++) {
    at += p.timeDeltas[i]!;
    const d = durations[i]!;
    if (window && (at < window[0] || at > window[1])) continue;
    allUs += d;
    const leaf = p.samples[i]!;
    const k = keyOf(leaf);
    if (k.name === '(idle)') {
      idleUs += d;
      continue;
    }
    const e = self.get(k.key) ?? { name: k.name, location: k.location, us: 0 };
    e.us += d;
    self.set(k.key, e);
    const fileKey = k.name.startsWith('(') ? k.name : k.file;
    files.set(fileKey, (files.get(fileKey) ?? 0) + d);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const key = keyOf(id).key;
      if (seen.has(key)) continue;
      seen.add(key);
      total.set(key, (total.get(key) ?? 0) + d);
    }
  }
  const busyUs = allUs - idleUs;
  const pct = (us: number) => Math.round((us / busyUs) * 1000) / 10;
  const functions = [...self.entries()]
    .map(([key, e]) => ({ name: e.name, location: e.location, selfMs: Math.round(e.us / 100) / 10, selfPct: pct(e.us), totalPct: pct(total.get(key) ?? 0) }))
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, 150);
  const fileList = [...files.entries()]
    .map(([file, us]) => ({ file, selfMs: Math.round(us / 100) / 10, selfPct: pct(us) }))
    .sort((a, b) => b.selfMs - a.selfMs);
  return { sampledMs: Math.round(allUs / 1000), busyMs: Math.round(busyUs / 1000), idleMs: Math.round(idleUs / 1000), functions, files: fileList };
}
