import { readFileSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { fileURLToPath } from 'node:url';

/** A V8 `.cpuprofile` as written by `node --cpu-prof` (only the fields read here). */
interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }; hitCount?: number }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTimeRow {
  /** `functionName file:line`: for the project's code the TypeScript source (via the emitted source maps), else the file run. */
  name: string;
  /** Where the code lives: `src`, a package name, `node` (internals) or a V8 pseudo-frame. */
  area: string;
  selfMs: number;
  share: number;
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of sampled time per area (src, fastify, pino, undici, node, (garbage collector), …). */
  areas: Array<{ area: string; selfMs: number; share: number }>;
  top: SelfTimeRow[];
  topSrc: SelfTimeRow[];
}

function areaOf(url: string, functionName: string): string {
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? 'node_modules');
  }
  if (url.includes('/dist/src/')) return 'src';
  return 'other';
}

const sourceMaps = new Map<string, SourceMap | null>();

/** `src/…/file.ts:LINE` for a frame of the compiled project code, from its `.js.map`; undefined when unmapped. */
function originalPosition(url: string, line: number, column: number): string | undefined {
  if (!url.startsWith('file://') || !url.includes('/dist/src/')) return undefined;
  let map = sourceMaps.get(url);
  if (map === undefined) {
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${fileURLToPath(url)}.map`, 'utf8')));
    } catch {
      map = null;
    }
    sourceMaps.set(url, map);
  }
  if (!map) return undefined;
  const entry = map.findEntry(line, column);
  if (!('originalSource' in entry)) return undefined;
  const source = entry.originalSource;
  const at = source.lastIndexOf('/src/');
  return `${at === -1 ? source : source.slice(at + 1)}:${entry.originalLine + 1}`;
}

function shortUrl(url: string): string {
  const src = url.indexOf('/dist/src/');
  if (src !== -1) return url.slice(src + '/dist/'.length);
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) return url.slice(nm + '/node_modules/'.length);
  return url.replace(/^file:\/\//, '');
}

/**
 * Self time per function of a `.cpuprofile`, aggregated over identical frames. The `(idle)`
 * pseudo-frame (the event loop waiting) is left out of the shares, so they read as "of the
 * time the gateway was busy".
 */
export function summariseCpuProfile(path: string, topN = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const rows = new Map<string, { name: string; area: string; us: number }>();
  const areas = new Map<string, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber, columnNumber } = node.callFrame;
    if (functionName === '(idle)') continue;
    busyUs += us;
    const area = areaOf(url, functionName);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const where = url ? originalPosition(url, lineNumber, columnNumber) ?? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const name = `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    const row = rows.get(name) ?? { name, area, us: 0 };
    row.us += us;
    rows.set(name, row);
  }
  const toRow = (r: { name: string; area: string; us: number }): SelfTimeRow => ({ name: r.name, area: r.area, selfMs: r.us / 1000, share: busyUs > 0 ? r.us / busyUs : 0 });
  const sorted = [...rows.values()].sort((a, b) => b.us - a.us);
  return {
    totalMs: busyUs / 1000,
    areas: [...areas.entries()].sort((a, b) => b[1] - a[1]).map(([area, us]) => ({ area, selfMs: us / 1000, share: busyUs > 0 ? us / busyUs : 0 })),
    top: sorted.slice(0, topN).map(toRow),
    topSrc: sorted.filter((r) => r.area === 'src').slice(0, topN).map(toRow),
  };
}
