/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package/module, so a
 * benchmark run's profile can be read without DevTools.
 *
 *   node dist/bench/bench/tools/cpuprofile.js FILE.cpuprofile [top=25]
 *   node dist/bench/bench/tools/cpuprofile.js FILE.cpuprofile callers FUNCTION   who calls FUNCTION
 *   ... --window=FROM:TO   only samples between FROM and TO seconds after the profile started (the
 *                          operator bench logs when convergence and the steady window begin and end)
 */
import fs from 'node:fs';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export function summarise(profile: Profile, top = 25): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map<string, number>();
  const byModule = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const mod = moduleOf(url, n.callFrame.functionName);
    const fn = `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(url)}:${n.callFrame.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
  }
  const fmt = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(
        ([k, us]) =>
          `${((100 * us) / total).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
      )
      .join('\n');
  return `total sampled ${(total / 1000).toFixed(0)} ms\n\nby module:\n${fmt(byModule)}\n\nby function (self):\n${fmt(byFn)}`;
}

function shortUrl(url: string): string {
  const i = url.lastIndexOf('node_modules/');
  if (i >= 0) return url.slice(i + 'node_modules/'.length);
  const j = url.indexOf('/js/');
  return j >= 0 ? url.slice(j + 4) : url;
}

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/builtin)';
  if (url.startsWith('node:')) return url;
  const i = url.lastIndexOf('node_modules/');
  if (i >= 0) {
    const rest = url.slice(i + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return shortUrl(url);
}

/** The call stacks (up to `depth` frames) in which `fn` has self time, heaviest first. */
export function callers(profile: Profile, fn: string, depth = 6, top = 15): string {
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const stacks = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const n = byId.get(id)!;
    if (n.callFrame.functionName !== fn) continue;
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const frames: string[] = [];
    for (let p = parent.get(id); p !== undefined && frames.length < depth; p = parent.get(p)) {
      const f = byId.get(p)!.callFrame;
      frames.push(
        `${f.functionName || '(anon)'}@${shortUrl(f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}`,
      );
    }
    const key = frames.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + us);
  }
  return (
    `${fn}: ${(total / 1000).toFixed(0)} ms\n` +
    [...stacks.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => `${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`)
      .join('\n')
  );
}

/** The profile with the samples outside [fromS, toS) (seconds after its start) dropped. */
export function windowed(profile: Profile, fromS: number, toS: number): Profile {
  const samples: number[] = [];
  const timeDeltas: number[] = [];
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t >= fromS * 1e6 && t < toS * 1e6) {
      samples.push(profile.samples[i]!);
      timeDeltas.push(profile.timeDeltas[i] ?? 0);
    }
  }
  return { ...profile, samples, timeDeltas };
}

const args = process.argv.slice(2);
const win = args.find((a) => a.startsWith('--window='));
const [file, arg, fn] = args.filter((a) => !a.startsWith('--window='));
if (file) {
  let profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  if (win) {
    const [from, to] = win.slice('--window='.length).split(':').map(Number);
    profile = windowed(profile, from ?? 0, to ?? Infinity);
  }
  console.log(arg === 'callers' && fn ? callers(profile, fn) : summarise(profile, Number(arg ?? 25)));
}
