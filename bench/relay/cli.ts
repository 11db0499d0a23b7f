/**
 * `npm run bench:relay [-- options]`: mailfleet, Postfix and Haraka side by side under one load, in one
 * run; prints the tables and rewrites the relay section of bench/RESULTS.md.
 *
 *   --sessions N          parallel smtp-source sessions (20)
 *   --messages N          messages per measured run (20000)
 *   --bytes N             payload bytes per message (4096)
 *   --reps N              repetitions per relay and mode (3)
 *   --modes LIST          new,reuse
 *   --targets LIST        mailfleet,postfix,haraka,direct,bare (direct: smtp-source → smtp-sink;
 *                         bare: smtp-server alone, library defaults and with mailfleet's adapter)
 *   --warmup N            messages before each measured run (1000)
 *   --probe-rate N        latency probe submissions per second (10)
 *   --no-large, --no-idle skip the 50 MB and the 1 000 idle connections tests
 *   --large-bytes N       (52428800)   --idle-connections N (1000)   --idle-messages N (5000)
 *   --results FILE        Markdown to update (bench/RESULTS.md); --no-results to leave it alone
 *   --env K=V             environment for the mailfleet relay (repeatable), e.g. UV_THREADPOOL_SIZE=8
 *   --node-arg ARG        node flag for the mailfleet relay (repeatable), e.g. --cpu-prof
 *   --set PATH=JSON       mailfleet config override (repeatable), e.g. --set log.level='"warn"'
 *   --variant NAME=JSON   one more mailfleet target, "mailfleet[NAME]", run interleaved with the others
 *                         for A/B comparisons: {"env":{..},"config":{..},"nodeArgs":[..],"cli":"path",
 *                         "workers":N} (workers: the prototype relay/prototype-relay.ts)
 *   --fleet-store         issue 14's side-by-side: starts a redis-server on loopback and adds two
 *                         targets with the same limits set above the load (a sender-domain rate, site
 *                         shaping): "mailfleet[limits per pod]" and "mailfleet[fleet store]"; writes its
 *                         own section of RESULTS.md (bench:relay-fleet). Needs redis-server (Debian).
 *   --keep                keep every run's directory (logs, queues) under the work directory
 *
 * Needs: Postfix's smtp-source and smtp-sink (Debian package postfix), root for the private Postfix
 * instance, npm for Haraka (installed once into ~/.cache/mailfleet/bench/haraka).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { exitOnSignals, repoRoot, runMain } from '../lib/proc.js';
import { runRelayBench, type Mode } from './bench.js';
import { startRedis } from '../../test/helpers/redis.js';
import { consoleSummary, FLEET_TARGETS, markdown, replaceSection, type Machine } from './report.js';
import { bareSmtpServer, deepMerge, direct, haraka, mailfleet, postfix, type Target } from './targets.js';

function sh(cmd: string, args: string[], cwd?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', cwd, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '?';
  }
}

function mailfleetVersion(root: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const rev = sh('git', ['rev-parse', '--short', 'HEAD'], root);
  const dirty = sh('git', ['status', '--porcelain', '--', 'relay'], root)
    ? '+uncommitted relay/ changes'
    : '';
  return `mailfleet ${String(pkg.version)} @ ${rev}${dirty}`;
}

function machine(
  root: string,
  workDir: string,
  loadavg: { start: number[]; end: number[] },
  versions: string[],
): Machine {
  const cpus = os.cpus();
  const la = (v: number[]) => v.map((x) => x.toFixed(2)).join(' ');
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpus: `${cpus.length} × ${cpus[0]?.model ?? '?'}`,
    kernel: os.release(),
    memory: `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM`,
    filesystem: sh('stat', ['-f', '-c', '%T', workDir]),
    versions: [
      ...versions,
      `smtp-source/smtp-sink from ${sh('dpkg-query', ['-W', '-f', '${Package} ${Version}', 'postfix'])}`,
      `smtp-server ${readVersion(root, 'smtp-server')}, nodemailer ${readVersion(root, 'nodemailer')}`,
    ],
    loadavg: `${la(loadavg.start)} → ${la(loadavg.end)}`,
  };
}

function readVersion(root: string, pkg: string): string {
  try {
    return String(
      JSON.parse(fs.readFileSync(path.join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version,
    );
  } catch {
    return '?';
  }
}

async function main(): Promise<number> {
  exitOnSignals();
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string', default: '20' },
      messages: { type: 'string', default: '20000' },
      bytes: { type: 'string', default: '4096' },
      reps: { type: 'string', default: '3' },
      modes: { type: 'string', default: 'new,reuse' },
      targets: { type: 'string', default: 'mailfleet,postfix,haraka,direct,bare' },
      warmup: { type: 'string', default: '1000' },
      'probe-rate': { type: 'string', default: '10' },
      'no-large': { type: 'boolean', default: false },
      'no-idle': { type: 'boolean', default: false },
      'large-bytes': { type: 'string', default: String(50 * 1024 * 1024) },
      'idle-connections': { type: 'string', default: '1000' },
      'idle-messages': { type: 'string', default: '5000' },
      results: { type: 'string', default: 'bench/RESULTS.md' },
      'no-results': { type: 'boolean', default: false },
      'work-dir': { type: 'string' },
      'relay-cli': { type: 'string' },
      env: { type: 'string', multiple: true, default: [] },
      'node-arg': { type: 'string', multiple: true, default: [] },
      set: { type: 'string', multiple: true, default: [] },
      variant: { type: 'string', multiple: true, default: [] },
      keep: { type: 'boolean', default: false },
      'fleet-store': { type: 'boolean', default: false },
    },
  });
  const root = repoRoot();
  const build = path.join(root, 'dist/bench');
  const relayCli = path.resolve(values['relay-cli'] ?? path.join(build, 'relay/cli.js'));
  const modes = values.modes.split(',').map((m) => m.trim()) as Mode[];
  if (!modes.every((m) => m === 'new' || m === 'reuse')) throw new Error('--modes: new and/or reuse');
  const env = Object.fromEntries(
    values.env.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
  const overrides: Record<string, unknown> = {};
  for (const kv of values.set) {
    const i = kv.indexOf('=');
    const keys = kv.slice(0, i).split('.');
    let o = overrides;
    for (const k of keys.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
    o[keys.at(-1)!] = JSON.parse(kv.slice(i + 1));
  }
  const targets: Target[] = [];
  for (const t of values.targets
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (t === 'mailfleet')
      targets.push(
        mailfleet({
          cli: relayCli,
          env,
          nodeArgs: values['node-arg'],
          config: overrides,
          version: mailfleetVersion(root),
        }),
      );
    else if (t === 'postfix') targets.push(postfix());
    else if (t === 'haraka')
      targets.push(haraka({ cacheDir: path.join(os.homedir(), '.cache/mailfleet/bench/haraka') }));
    else if (t === 'direct') targets.push(direct());
    else if (t === 'bare') {
      const script = path.join(build, 'bench/relay/bare-server.js');
      targets.push(
        bareSmtpServer({ script, variant: 'library' }),
        bareSmtpServer({ script, variant: 'adapter' }),
      );
    } else throw new Error(`unknown target ${t}`);
  }
  for (const v of values.variant) {
    const i = v.indexOf('=');
    const spec = JSON.parse(v.slice(i + 1)) as {
      env?: Record<string, string>;
      config?: Record<string, unknown>;
      nodeArgs?: string[];
      cli?: string;
      workers?: number;
    };
    targets.push(
      mailfleet({
        label: `mailfleet[${v.slice(0, i)}]`,
        cli: spec.cli ? path.resolve(spec.cli) : relayCli,
        env: { ...env, ...spec.env },
        nodeArgs: spec.nodeArgs ?? values['node-arg'],
        config: deepMerge(overrides, spec.config ?? {}),
        version: mailfleetVersion(root),
        workers: spec.workers,
        prototypeScript: path.join(build, 'bench/relay/prototype-relay.js'),
      }),
    );
  }
  const redis = values['fleet-store'] ? await startRedis() : undefined;
  if (redis) {
    // Every limit the store serves is on, each far above the load, so nothing is refused or held: what
    // differs is only where it is counted.
    const limits = {
      limits: { messagesPerMinutePerSenderDomain: 100_000_000 },
      delivery: { shaping: { maxConnections: 1000, messagesPerMinute: 100_000_000 } },
    };
    for (const [label, extra] of [
      [FLEET_TARGETS.off, {}],
      [FLEET_TARGETS.on, { fleetStore: { url: redis.url, keyPrefix: 'mailfleet:bench:' } }],
    ] as const)
      targets.push(
        mailfleet({
          label,
          cli: relayCli,
          env,
          nodeArgs: values['node-arg'],
          config: deepMerge(deepMerge(overrides, limits), extra),
          version: mailfleetVersion(root),
        }),
      );
  }
  const load = {
    sessions: Number(values.sessions),
    messages: Number(values.messages),
    bytes: Number(values.bytes),
  };
  const workDir = values['work-dir'] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-bench-'));
  const started = Date.now();
  const say = (line: string) =>
    console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);
  say(
    `work directory ${workDir}; load average ${os
      .loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );
  const result = await runRelayBench({
    repoRoot: root,
    workDir,
    targets,
    load,
    modes,
    reps: Number(values.reps),
    warmup: Number(values.warmup),
    probeRate: Number(values['probe-rate']),
    // The library's 100 ms greeting pause makes a new connection per message ~100× slower: fewer messages.
    messagesFor: (t, mode) =>
      t.name.includes('library') && mode === 'new' ? Math.ceil(load.messages / 10) : load.messages,
    large: values['no-large'] ? undefined : { sessions: load.sessions, bytes: Number(values['large-bytes']) },
    idle: values['no-idle']
      ? undefined
      : { connections: Number(values['idle-connections']), messages: Number(values['idle-messages']) },
    keep: values.keep,
    log: say,
  }).finally(() => redis?.stop());
  const versions = targets.map((t) => `${t.name}: ${t.version()}`);
  const input = {
    result,
    modes,
    load,
    reps: Number(values.reps),
    warmup: Number(values.warmup),
    probeRate: Number(values['probe-rate']),
    machine: machine(root, workDir, result.loadavg, versions),
    command: `npm run bench:relay${
      process.argv.length > 2
        ? ` -- ${process.argv
            .slice(2)
            .map((a) => a || "''")
            .join(' ')}`
        : ''
    }`,
    targets: targets.map((t) => ({ name: t.name, version: t.version(), describe: t.describe() })),
    fleet: values['fleet-store'],
  };
  console.log(consoleSummary(input));
  if (!values['no-results']) {
    const file = path.resolve(root, values.results);
    const doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n';
    const section = values['fleet-store'] ? 'bench:relay-fleet' : 'bench:relay';
    fs.writeFileSync(file, replaceSection(doc, section, markdown(input)));
    say(`wrote ${path.relative(root, file)}`);
  }
  if (!values.keep) fs.rmSync(workDir, { recursive: true, force: true });
  return result.runs.every((r) => r.ok) ? 0 : 1;
}

runMain(main);
