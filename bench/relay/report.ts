/**
 * Turns a relay benchmark result into tables (pure): the console summary and the Markdown section of
 * bench/RESULTS.md. Ratios compare mailfleet's median with each other relay's median, same mode, same run.
 */
import { fmt, fmtSpread, MiB, spread, type Spread } from '../lib/stats.js';
import type { Mode, RelayBenchResult, RunResult } from './bench.js';

export interface Machine {
  date: string;
  cpus: string;
  kernel: string;
  memory: string;
  filesystem: string;
  versions: string[];
  loadavg: string;
}

export interface Summary {
  target: string;
  mode: Mode;
  runs: number;
  failed: number;
  errors: string[];
  messages: number;
  accepted: Spread;
  delivered: Spread;
  p50: Spread;
  p99: Spread;
  cpu: Spread;
  cpuPerMsgMs: Spread;
  rss: Spread;
  pss: Spread;
}

export const MODE_TITLE: Record<Mode, string> = {
  new: 'new connection per message',
  reuse: 'reused connections (smtp-source -d)',
};

export function summarise(runs: readonly RunResult[]): Summary[] {
  const keys: { target: string; mode: Mode }[] = [];
  for (const r of runs)
    if (!keys.some((k) => k.target === r.target && k.mode === r.mode))
      keys.push({ target: r.target, mode: r.mode });
  return keys.map(({ target, mode }) => {
    const all = runs.filter((r) => r.target === target && r.mode === mode);
    const ok = all.filter((r) => r.ok);
    return {
      target,
      mode,
      runs: all.length,
      failed: all.length - ok.length,
      errors: all.filter((r) => !r.ok).map((r) => r.error ?? 'failed'),
      messages: all[0]?.messages ?? 0,
      accepted: spread(ok.map((r) => r.acceptedPerSec)),
      delivered: spread(ok.map((r) => r.deliveredPerSec)),
      p50: spread(ok.map((r) => r.probe?.p50 ?? NaN)),
      p99: spread(ok.map((r) => r.probe?.p99 ?? NaN)),
      cpu: spread(ok.map((r) => r.usage?.cpuSeconds ?? NaN)),
      cpuPerMsgMs: spread(ok.map((r) => ((r.usage?.cpuSeconds ?? NaN) * 1000) / r.messages)),
      rss: spread(ok.map((r) => (r.usage?.peakRssBytes ?? NaN) / MiB)),
      pss: spread(ok.map((r) => (r.usage?.peakPssBytes ?? NaN) / MiB)),
    };
  });
}

function ratio(a: Spread | undefined, b: Spread | undefined): string {
  if (!a || !b || a.n === 0 || b.n === 0) return '–';
  return `${(a.median / b.median).toFixed(2)}×`;
}

export interface Verdict {
  mode: Mode;
  /** mailfleet's CPU per delivered message ÷ Postfix's. */
  cpuVsPostfix: number;
  /** Delivered msgs/s, mailfleet ÷ Postfix. */
  vsPostfix: number;
  vsHaraka: number;
  /** The delivered ratio this mode must reach. */
  deliveredTarget: number;
  met: boolean;
}

/** At most this share of Postfix's CPU per delivered message, in each mode (issue 15). */
export const CPU_TARGET = 0.5;
/** Delivered msgs/s against Postfix's, per mode (issue 15); Haraka is shown, without a target. */
export const DELIVERED_TARGET: Record<Mode, number> = { new: 2, reuse: 2.5 };

/** The targets: CPU per delivered message ≤ ½ Postfix's and delivered ≥ 2× / 2.5× Postfix's, per mode. */
export function verdicts(summaries: readonly Summary[], modes: readonly Mode[]): Verdict[] {
  return modes.map((mode) => {
    const get = (t: string) => summaries.find((s) => s.mode === mode && s.target === t);
    const mf = get('mailfleet');
    const pf = get('postfix');
    const vsPostfix = (mf?.delivered.median ?? NaN) / (pf?.delivered.median ?? NaN);
    const vsHaraka = (mf?.delivered.median ?? NaN) / (get('haraka')?.delivered.median ?? NaN);
    const cpuVsPostfix = (mf?.cpuPerMsgMs.median ?? NaN) / (pf?.cpuPerMsgMs.median ?? NaN);
    const deliveredTarget = DELIVERED_TARGET[mode];
    return {
      mode,
      cpuVsPostfix,
      vsPostfix,
      vsHaraka,
      deliveredTarget,
      met: cpuVsPostfix <= CPU_TARGET && vsPostfix >= deliveredTarget,
    };
  });
}

function row(cells: string[]): string {
  return `| ${cells.join(' | ')} |`;
}

export function throughputTable(summaries: readonly Summary[], mode: Mode): string {
  const rows = summaries.filter((s) => s.mode === mode);
  const mf = rows.find((s) => s.target === 'mailfleet');
  const pf = rows.find((s) => s.target === 'postfix');
  const hk = rows.find((s) => s.target === 'haraka');
  const lines = [
    row([
      'relay',
      'accepted msgs/s',
      'delivered msgs/s',
      'mailfleet ×',
      'p50 ms',
      'p99 ms',
      'CPU s',
      'CPU ms/msg',
      'peak RSS MiB',
      'peak PSS MiB',
      'runs ok',
    ]),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
  ];
  for (const s of rows) {
    const times =
      s.target === 'postfix'
        ? ratio(mf?.delivered, pf?.delivered)
        : s.target === 'haraka'
          ? ratio(mf?.delivered, hk?.delivered)
          : '';
    lines.push(
      row([
        s.messages === rows[0]?.messages ? s.target : `${s.target} (${fmt(s.messages)} msgs)`,
        fmtSpread(s.accepted),
        fmtSpread(s.delivered),
        times,
        fmtSpread(s.p50, 1),
        fmtSpread(s.p99, 1),
        fmtSpread(s.cpu, 1),
        fmtSpread(s.cpuPerMsgMs, 2),
        fmtSpread(s.rss),
        fmtSpread(s.pss),
        `${s.runs - s.failed}/${s.runs}`,
      ]),
    );
  }
  return lines.join('\n');
}

export function largeTable(result: RelayBenchResult): string {
  const lines = [
    row([
      'relay',
      'messages',
      'seconds',
      'RSS before MiB',
      'peak RSS MiB',
      'growth MiB',
      'peak PSS MiB',
      'CPU s',
      'result',
    ]),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']),
  ];
  for (const r of result.large)
    lines.push(
      row([
        r.target,
        `${r.messages} × ${fmt(r.bytes / 1e6)} MB`,
        fmt(r.seconds, 1),
        fmt(r.startRssBytes / MiB),
        fmt(r.peakRssBytes / MiB),
        fmt((r.peakRssBytes - r.startRssBytes) / MiB),
        fmt(r.peakPssBytes / MiB),
        fmt(r.cpuSeconds, 1),
        r.ok ? 'ok' : `failed: ${oneLine(r.error)}`,
      ]),
    );
  return lines.join('\n');
}

export function idleTable(result: RelayBenchResult): string {
  const lines = [
    row([
      'relay',
      'idle connections greeted',
      'still open after the load',
      'RSS before MiB',
      'RSS with idle MiB',
      'peak PSS MiB',
      'load delivered',
      'msgs/s',
      'probe p99 ms',
      'result',
    ]),
    row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']),
  ];
  for (const r of result.idle)
    lines.push(
      row([
        r.target,
        `${fmt(r.greeted)} / ${fmt(r.connections)}`,
        fmt(r.stillOpen),
        fmt(r.rssBeforeBytes / MiB),
        fmt(r.rssWithIdleBytes / MiB),
        fmt(r.peakPssBytes / MiB),
        `${fmt(r.delivered)} / ${fmt(r.messages)}`,
        fmt(r.deliveredPerSec),
        fmt(r.probeP99 ?? NaN, 1),
        r.ok ? 'kept serving' : `failed: ${oneLine(r.error)}`,
      ]),
    );
  return lines.join('\n');
}

function oneLine(s: string | undefined): string {
  return (s ?? '').replace(/\s+/g, ' ').slice(0, 160);
}

export function verdictText(v: readonly Verdict[]): string {
  const x2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '–');
  return v
    .map(
      (x) =>
        `- ${MODE_TITLE[x.mode]}: mailfleet spends ${x2(x.cpuVsPostfix)}× Postfix's CPU per delivered message ` +
        `(target ≤ ${CPU_TARGET}×) and delivers ${x2(x.vsPostfix)}× Postfix (target ≥ ${x.deliveredTarget}×; ` +
        `${x2(x.vsHaraka)}× Haraka): **${x.met ? 'met' : 'not met'}**`,
    )
    .join('\n');
}

/** The two targets of a `--fleet-store` run: the same limits, counted per pod and in the shared store. */
export const FLEET_TARGETS = { off: 'mailfleet[limits per pod]', on: 'mailfleet[fleet store]' } as const;

/** Issue 14's target: with the shared store on, at most 10% less delivered than with it off. */
export function fleetVerdictText(summaries: readonly Summary[], modes: readonly Mode[]): string {
  return modes
    .map((mode) => {
      const get = (t: string) => summaries.find((s) => s.mode === mode && s.target === t);
      const on = get(FLEET_TARGETS.on);
      const off = get(FLEET_TARGETS.off);
      const r = (on?.delivered.median ?? NaN) / (off?.delivered.median ?? NaN);
      const cpu = (on?.cpuPerMsgMs.median ?? NaN) / (off?.cpuPerMsgMs.median ?? NaN);
      return (
        `- ${MODE_TITLE[mode]}: with the fleet store mailfleet delivers ${Number.isFinite(r) ? r.toFixed(2) : '–'}× ` +
        `what it delivers without it (target ≥ 0.90×), at ${Number.isFinite(cpu) ? cpu.toFixed(2) : '–'}× the CPU per message: ` +
        `**${r >= 0.9 ? 'met' : 'not met'}**`
      );
    })
    .join('\n');
}

export interface ReportInput {
  result: RelayBenchResult;
  modes: Mode[];
  load: { sessions: number; messages: number; bytes: number };
  reps: number;
  warmup: number;
  probeRate: number;
  machine: Machine;
  command: string;
  targets: { name: string; version: string; describe: string }[];
  /** A `--fleet-store` run: its own title and verdict (the store on against off). */
  fleet?: boolean;
}

export function markdown(input: ReportInput): string {
  const { result, machine } = input;
  const summaries = summarise(result.runs);
  const out: string[] = [];
  out.push(
    input.fleet
      ? '## Relay: the fleet store on and off, under the same load'
      : `## Relay: mailfleet, Postfix and Haraka under the same load`,
  );
  out.push('');
  out.push(
    `Run ${machine.date}, ${((result.finishedAt.getTime() - result.startedAt.getTime()) / 60000).toFixed(0)} minutes. ` +
      `Load: smtp-source, ${input.load.sessions} sessions, ${fmt(input.load.messages)} messages of ${fmt(input.load.bytes)} bytes ` +
      `(payload; plus smtp-source's headers), ${input.reps} repetitions per relay and mode, interleaved, ` +
      `each on a freshly started relay after a warm-up of ${fmt(input.warmup)} messages. Figures are medians ` +
      `(min–max). Latency: the bench's own client, one message at a time at ${input.probeRate}/s during the ` +
      `load, MAIL FROM → 250 after DATA. CPU and peak RSS: the relay's whole process tree over the measured window.`,
  );
  if (input.fleet)
    out.push(
      '',
      `Both targets have every shared limit on, far above the load (a sender-domain rate, a site rate and ` +
        `connection limit): \`${FLEET_TARGETS.off}\` counts them in the relay, \`${FLEET_TARGETS.on}\` in a ` +
        `redis-server on loopback started for the run (per message: one rate at MAIL, one suppression ` +
        `lookup at RCPT, one admission and one release per delivery). The redis-server's own CPU is not in ` +
        `the relay's figures.`,
    );
  out.push('');
  out.push(
    input.fleet ? fleetVerdictText(summaries, input.modes) : verdictText(verdicts(summaries, input.modes)),
  );
  for (const mode of input.modes) {
    out.push('');
    out.push(`### ${MODE_TITLE[mode]}`);
    out.push('');
    out.push(throughputTable(summaries, mode));
    const failed = summaries.filter((s) => s.mode === mode && s.failed > 0);
    for (const s of failed) out.push(`\n${s.target}: ${s.failed} failed run(s): ${oneLine(s.errors[0])}`);
  }
  if (result.large.length > 0) {
    out.push('');
    out.push(
      `### Large messages: ${result.large[0]!.messages} sessions each sending one ${fmt(result.large[0]!.bytes / 1e6)} MB message`,
    );
    out.push('');
    out.push(largeTable(result));
  }
  if (result.idle.length > 0) {
    out.push('');
    out.push(
      `### ${fmt(result.idle[0]!.connections)} idle connections held open while ${fmt(result.idle[0]!.messages)} messages are relayed (reused connections)`,
    );
    out.push('');
    out.push(idleTable(result));
  }
  out.push('');
  out.push('### Machine and versions');
  out.push('');
  out.push(
    `- ${machine.cpus}; ${machine.memory}; kernel ${machine.kernel}; spool file system ${machine.filesystem}`,
  );
  out.push(`- load average (1/5/15 min) at start and end: ${machine.loadavg}`);
  for (const v of machine.versions) out.push(`- ${v}`);
  out.push('');
  out.push('### Commands');
  out.push('');
  out.push('```sh');
  out.push(input.command);
  out.push('```');
  out.push('');
  const cmds = new Set(result.runs.map((r) => r.command));
  out.push('Load, per run (PORT is the relay under test):');
  out.push('');
  out.push('```sh');
  for (const c of cmds) out.push(c);
  for (const r of result.large.slice(0, 1)) out.push(r.command);
  for (const r of result.idle.slice(0, 1)) out.push(`# ${r.command}`);
  out.push('```');
  out.push('');
  out.push('Relays:');
  out.push('');
  for (const t of input.targets) out.push(`- ${t.name}: ${t.version}; ${t.describe}`);
  return out.join('\n');
}

/** A plain-text summary for the terminal. */
export function consoleSummary(input: ReportInput): string {
  const summaries = summarise(input.result.runs);
  const out: string[] = [];
  for (const mode of input.modes) {
    out.push(`\n${MODE_TITLE[mode]}:`);
    out.push(throughputTable(summaries, mode));
  }
  if (input.result.large.length) out.push(`\nlarge messages:\n${largeTable(input.result)}`);
  if (input.result.idle.length) out.push(`\nidle connections:\n${idleTable(input.result)}`);
  out.push('');
  out.push(
    input.fleet ? fleetVerdictText(summaries, input.modes) : verdictText(verdicts(summaries, input.modes)),
  );
  return out.join('\n');
}

/** Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` (appends the block if absent). */
export function replaceSection(doc: string, name: string, body: string): string {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${begin}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) return doc.slice(0, i) + block + doc.slice(j + end.length);
  return `${doc.trimEnd()}\n\n${block}\n`;
}
