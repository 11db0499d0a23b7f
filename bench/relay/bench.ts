/**
 * The relay benchmark: the same load against each target, one after the other, in one run.
 *
 * One measured run (target × mode × repetition):
 *   fresh sink (smtp-sink, counting) → fresh relay (new directory, empty queue) → warm-up load, waited
 *   until delivered → CPU/RSS sampler on the relay's process tree → latency probe (one message at a
 *   time, `probeRate` per second) → smtp-source: S sessions, M messages of L bytes, new connection per
 *   message or reused (-d) → smtp-source exits (accepted) → probe stops → the sink has every message
 *   (delivered) → sampler stops → relay and sink stopped.
 *
 *   accepted msgs/s   M / (smtp-source's wall time)
 *   delivered msgs/s  M / (time from the start of the load until the sink counted all M + probes)
 *   latency           probe submissions, MAIL FROM → 250 after the final "."
 *   CPU, peak RSS     /proc of the relay's process tree over the measured window (lib/procstat.ts)
 *
 * Repetitions are interleaved (rep 1 of every target, then rep 2, ...) so slow drifts of a shared
 * machine spread over all targets instead of landing on one.
 *
 * Extras, once per target: 20 sessions each sending one 50 MB message (RSS must stay flat), and 1 000
 * idle connections held open while a reused-connection load runs (the relay must keep serving).
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { RECIPIENT_DOMAIN, SENDER_DOMAIN, startDns, type DnsServer } from '../lib/dns.js';
import { LatencyProbe, type ProbeResult } from '../lib/probe.js';
import { sampleTree, TreeSampler, type TreeUsage } from '../lib/procstat.js';
import { quantile } from '../lib/stats.js';
import { runSource, startSink, type Sink, type SourceOptions } from '../lib/smtp-tools.js';
import type { RunningRelay, Target } from './targets.js';

export type Mode = 'new' | 'reuse';

export interface LoadShape {
  sessions: number;
  messages: number;
  bytes: number;
}

export interface RelayBenchOptions {
  repoRoot: string;
  /** Parent of the per-run directories (removed after each run unless keep). */
  workDir: string;
  targets: Target[];
  load: LoadShape;
  modes: Mode[];
  reps: number;
  /** Messages sent (and delivered) before each measured run. */
  warmup: number;
  /** Probe submissions per second (0: no probe). */
  probeRate: number;
  /** Messages for targets that are far slower with a new connection per message (bare library). */
  messagesFor?: (target: Target, mode: Mode) => number;
  large?: { sessions: number; bytes: number };
  idle?: { connections: number; messages: number };
  keep?: boolean;
  log?: (line: string) => void;
}

export interface RunResult {
  target: string;
  mode: Mode;
  rep: number;
  messages: number;
  ok: boolean;
  error?: string;
  acceptMs: number;
  deliverMs: number;
  acceptedPerSec: number;
  deliveredPerSec: number;
  probe?: { p50: number; p99: number; samples: number; refused: number; skipped: number };
  usage?: TreeUsage;
  command: string;
}

export interface LargeResult {
  target: string;
  ok: boolean;
  error?: string;
  messages: number;
  bytes: number;
  seconds: number;
  startRssBytes: number;
  peakRssBytes: number;
  peakPssBytes: number;
  cpuSeconds: number;
  command: string;
}

export interface IdleResult {
  target: string;
  ok: boolean;
  error?: string;
  connections: number;
  greeted: number;
  stillOpen: number;
  rssBeforeBytes: number;
  rssWithIdleBytes: number;
  peakRssBytes: number;
  peakPssBytes: number;
  messages: number;
  delivered: number;
  deliveredPerSec: number;
  probeP99?: number;
  command: string;
}

export interface RelayBenchResult {
  runs: RunResult[];
  large: LargeResult[];
  idle: IdleResult[];
  startedAt: Date;
  finishedAt: Date;
  loadavg: { start: number[]; end: number[] };
}

const FROM = `load@${SENDER_DOMAIN}`;
const TO = `rcpt@${RECIPIENT_DOMAIN}`;
const PROBE = { from: `probe@${SENDER_DOMAIN}`, to: `probe@${RECIPIENT_DOMAIN}` };

/** Generous bound for a load of `messages`: at least 50 msgs/s, plus a minute. */
const boundMs = (messages: number) => 60_000 + (messages / 50) * 1000;

interface Env {
  opts: RelayBenchOptions;
  dns: DnsServer;
  say: (line: string) => void;
  seq: number;
}

async function withInstance<T>(
  env: Env,
  target: Target,
  label: string,
  fn: (relay: RunningRelay, sink: Sink, dir: string) => Promise<T>,
): Promise<T> {
  const dir = path.join(
    env.opts.workDir,
    `${String(++env.seq).padStart(3, '0')}-${slug(target.name)}-${label}`,
  );
  fs.mkdirSync(dir, { recursive: true });
  const sink = await startSink();
  let relay: RunningRelay | undefined;
  let failed = false;
  try {
    relay = await target.start({ dir, sinkPort: sink.port, dns: env.dns.server });
    return await fn(relay, sink, dir);
  } catch (err) {
    failed = true;
    throw err;
  } finally {
    await relay?.stop().catch((e: unknown) => env.say(`  (stopping ${target.name}: ${String(e)})`));
    await sink.stop();
    if (!env.opts.keep && !failed) fs.rmSync(dir, { recursive: true, force: true });
    else env.say(`  (kept ${dir})`);
  }
}

function slug(s: string): string {
  return s
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

function sourceOptions(port: number, shape: LoadShape, mode: Mode): SourceOptions {
  return {
    host: '127.0.0.1',
    port,
    sessions: shape.sessions,
    messages: shape.messages,
    bytes: shape.bytes,
    reuse: mode === 'reuse',
    from: FROM,
    to: TO,
    timeoutMs: boundMs(shape.messages),
  };
}

export function sourceCommand(o: SourceOptions): string {
  return `smtp-source -s ${o.sessions} -m ${o.messages} -l ${o.bytes}${o.reuse ? ' -d' : ''} -M source.bench.test -f ${o.from} -t ${o.to} 127.0.0.1:PORT`;
}

function probeSummary(p: ProbeResult): RunResult['probe'] {
  return {
    p50: quantile(p.latencies, 0.5),
    p99: quantile(p.latencies, 0.99),
    samples: p.latencies.length,
    refused: p.refused,
    skipped: p.skippedTicks,
  };
}

async function measuredRun(env: Env, target: Target, mode: Mode, rep: number): Promise<RunResult> {
  const { opts } = env;
  const messages = opts.messagesFor?.(target, mode) ?? opts.load.messages;
  const shape = { ...opts.load, messages };
  const base: RunResult = {
    target: target.name,
    mode,
    rep,
    messages,
    ok: false,
    acceptMs: NaN,
    deliverMs: NaN,
    acceptedPerSec: NaN,
    deliveredPerSec: NaN,
    command: sourceCommand(sourceOptions(0, shape, mode)),
  };
  try {
    return await withInstance(env, target, `${mode}-${rep}`, async (relay, sink) => {
      if (opts.warmup > 0) {
        const warm = Math.min(opts.warmup, messages);
        const w = await runSource(sourceOptions(relay.port, { ...shape, messages: warm }, mode));
        if (w.code !== 0) throw new Error(`warm-up: smtp-source exit ${w.code}: ${w.stderr}`);
        if (target.delivers) await sink.waitForMessages(warm, boundMs(warm));
      }
      const before = sink.messages;
      const sampler = relay.rootPid > 0 ? new TreeSampler(relay.rootPid) : undefined;
      const probe =
        opts.probeRate > 0
          ? new LatencyProbe({ host: '127.0.0.1', port: relay.port, rate: opts.probeRate, ...PROBE })
          : undefined;
      await probe?.start();
      const t0 = performance.now();
      const src = await runSource(sourceOptions(relay.port, shape, mode));
      const acceptMs = performance.now() - t0;
      const pr = await probe?.stop();
      if (src.code !== 0) throw new Error(`smtp-source exit ${src.code}: ${src.stderr}`);
      let deliverMs = NaN;
      if (target.delivers) {
        await sink.waitForMessages(before + messages + (pr?.accepted ?? 0), boundMs(messages));
        deliverMs = performance.now() - t0;
      }
      const usage = sampler?.stop();
      return {
        ...base,
        ok: true,
        acceptMs,
        deliverMs,
        acceptedPerSec: messages / (acceptMs / 1000),
        deliveredPerSec: messages / (deliverMs / 1000),
        probe: pr ? probeSummary(pr) : undefined,
        usage,
      };
    });
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  }
}

async function largeRun(env: Env, target: Target): Promise<LargeResult> {
  const large = env.opts.large!;
  const shape = { sessions: large.sessions, messages: large.sessions, bytes: large.bytes };
  const o = { ...sourceOptions(0, shape, 'reuse'), timeoutMs: 900_000 };
  const base: LargeResult = {
    target: target.name,
    ok: false,
    messages: shape.messages,
    bytes: large.bytes,
    seconds: NaN,
    startRssBytes: NaN,
    peakRssBytes: NaN,
    peakPssBytes: NaN,
    cpuSeconds: NaN,
    command: sourceCommand(o),
  };
  try {
    return await withInstance(env, target, 'large', async (relay, sink) => {
      const sampler = new TreeSampler(relay.rootPid, 50);
      const t0 = performance.now();
      const src = await runSource({ ...o, port: relay.port });
      if (src.code !== 0) throw new Error(`smtp-source exit ${src.code}: ${src.stderr}`);
      await sink.waitForMessages(shape.messages, 900_000);
      const usage = sampler.stop();
      return {
        ...base,
        ok: true,
        seconds: (performance.now() - t0) / 1000,
        startRssBytes: usage.startRssBytes,
        peakRssBytes: usage.peakRssBytes,
        peakPssBytes: usage.peakPssBytes,
        cpuSeconds: usage.cpuSeconds,
      };
    });
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  }
}

/** Opens `n` connections (50 at a time) and waits up to `greetMs` for each one's 220. */
async function openIdle(port: number, n: number, greetMs: number) {
  const sockets: net.Socket[] = [];
  let greeted = 0;
  const openOne = () =>
    new Promise<void>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      sockets.push(s);
      let seen = false;
      const timer = setTimeout(resolve, greetMs);
      s.once('data', (d: Buffer) => {
        if (!seen && d.toString('latin1').startsWith('220')) {
          seen = true;
          greeted++;
        }
        clearTimeout(timer);
        resolve();
      });
      s.on('error', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, openOne));
  return { sockets, greeted };
}

async function idleRun(env: Env, target: Target): Promise<IdleResult> {
  const idle = env.opts.idle!;
  const shape = { ...env.opts.load, messages: idle.messages };
  const o = { ...sourceOptions(0, shape, 'reuse'), timeoutMs: 90_000 };
  const base: IdleResult = {
    target: target.name,
    ok: false,
    connections: idle.connections,
    greeted: 0,
    stillOpen: 0,
    rssBeforeBytes: NaN,
    rssWithIdleBytes: NaN,
    peakRssBytes: NaN,
    peakPssBytes: NaN,
    messages: idle.messages,
    delivered: 0,
    deliveredPerSec: NaN,
    command: `${idle.connections} idle connections, then ${sourceCommand(o)}`,
  };
  let sockets: net.Socket[] = [];
  try {
    return await withInstance(env, target, 'idle', async (relay, sink) => {
      const sampler = new TreeSampler(relay.rootPid, 100);
      const opened = await openIdle(relay.port, idle.connections, 10_000);
      sockets = opened.sockets;
      const closed = new Set<net.Socket>();
      for (const s of sockets) s.once('close', () => closed.add(s));
      const withIdle = sampleTree(relay.rootPid).rssBytes;
      const probe =
        env.opts.probeRate > 0
          ? new LatencyProbe({ host: '127.0.0.1', port: relay.port, rate: env.opts.probeRate, ...PROBE })
          : undefined;
      let probeResult: ProbeResult | undefined;
      const t0 = performance.now();
      let error: string | undefined;
      try {
        await probe?.start();
        const src = await runSource({ ...o, port: relay.port });
        probeResult = await probe?.stop();
        if (src.code !== 0)
          error = `smtp-source exit ${src.code}: ${src.stderr || 'killed at the time bound'}`;
        await sink.waitForMessages(idle.messages + (probeResult?.accepted ?? 0), 60_000);
      } catch (err) {
        error ??= err instanceof Error ? err.message : String(err);
      }
      const ms = performance.now() - t0;
      const loadDone = error === undefined;
      const usage = sampler.stop();
      const delivered = Math.max(0, sink.messages - (probeResult?.accepted ?? 0));
      const stillOpen = sockets.filter((s) => !closed.has(s) && !s.destroyed).length;
      if (!error && opened.greeted < idle.connections)
        error = `greeted only ${opened.greeted} of ${idle.connections} connections within 10 s`;
      if (!error && stillOpen < idle.connections)
        error = `closed ${idle.connections - stillOpen} idle connections during the load`;
      return {
        ...base,
        ok: error === undefined,
        error,
        greeted: opened.greeted,
        stillOpen,
        rssBeforeBytes: usage.startRssBytes,
        rssWithIdleBytes: withIdle,
        peakRssBytes: usage.peakRssBytes,
        peakPssBytes: usage.peakPssBytes,
        delivered,
        deliveredPerSec: loadDone ? idle.messages / (ms / 1000) : NaN,
        probeP99: probeResult ? quantile(probeResult.latencies, 0.99) : undefined,
      };
    });
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  } finally {
    for (const s of sockets) s.destroy();
  }
}

export async function runRelayBench(opts: RelayBenchOptions): Promise<RelayBenchResult> {
  const say = opts.log ?? (() => undefined);
  fs.mkdirSync(opts.workDir, { recursive: true });
  const dns = await startDns(opts.repoRoot, opts.workDir);
  const env: Env = { opts, dns, say, seq: 0 };
  const result: RelayBenchResult = {
    runs: [],
    large: [],
    idle: [],
    startedAt: new Date(),
    finishedAt: new Date(),
    loadavg: { start: os.loadavg(), end: [] },
  };
  try {
    for (let rep = 1; rep <= opts.reps; rep++) {
      for (const mode of opts.modes) {
        for (const target of opts.targets) {
          const r = await measuredRun(env, target, mode, rep);
          result.runs.push(r);
          say(describeRun(r));
        }
      }
    }
    // The extras are about the relays as shipped: not the references, not the A/B variants ("name[variant]").
    const extras = opts.targets.filter(
      (t) => t.delivers && t.name !== 'smtp-source → smtp-sink' && !t.name.includes('['),
    );
    for (const target of extras) {
      if (opts.large) {
        const r = await largeRun(env, target);
        result.large.push(r);
        say(
          `${target.name} large: ${r.ok ? `${r.seconds.toFixed(1)} s, RSS ${mb(r.startRssBytes)} → peak ${mb(r.peakRssBytes)} MiB` : r.error}`,
        );
      }
      if (opts.idle) {
        const r = await idleRun(env, target);
        result.idle.push(r);
        say(
          `${target.name} idle: greeted ${r.greeted}/${r.connections}, open ${r.stillOpen}, delivered ${r.delivered}/${r.messages}` +
            `${r.ok ? ` at ${r.deliveredPerSec.toFixed(0)}/s` : ` (${r.error})`}`,
        );
      }
    }
  } finally {
    await dns.stop();
    result.finishedAt = new Date();
    result.loadavg.end = os.loadavg();
  }
  return result;
}

const mb = (b: number) => (b / (1024 * 1024)).toFixed(0);

function describeRun(r: RunResult): string {
  const head = `${r.target} ${r.mode} #${r.rep}:`;
  if (!r.ok) return `${head} FAILED: ${r.error}`;
  const p = r.probe ? ` p50 ${r.probe.p50.toFixed(1)} ms p99 ${r.probe.p99.toFixed(1)} ms` : '';
  const u = r.usage ? ` cpu ${r.usage.cpuSeconds.toFixed(1)} s rss ${mb(r.usage.peakRssBytes)} MiB` : '';
  const d = Number.isFinite(r.deliveredPerSec) ? ` delivered ${r.deliveredPerSec.toFixed(0)}/s` : '';
  return `${head} accepted ${r.acceptedPerSec.toFixed(0)}/s${d}${p}${u}`;
}
