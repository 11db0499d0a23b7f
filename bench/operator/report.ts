/** The operator benchmark's Markdown section (pure). */
import os from 'node:os';
import { fmt, MiB } from '../lib/stats.js';
import type { RequestCounts, ScenarioResult } from './bench.js';

const VERBS = ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'];

function verbs(c: RequestCounts | undefined): string[] {
  return VERBS.map((v) => fmt(c?.byVerb[v] ?? 0));
}

function writes(c: RequestCounts | undefined): string {
  if (!c || c.writes === 0) return 'none';
  return Object.entries(c.writesByResource)
    .sort((a, b) => b[1] - a[1])
    .map(([r, n]) => `${r} ${n}`)
    .join(', ');
}

const row = (cells: string[]) => `| ${cells.join(' | ')} |`;

const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');

/** The targets, judged on this run's figures (pure). */
export function targets(results: ScenarioResult[]): string[] {
  const out: string[] = [];
  const ok = results.filter((r) => r.ok);
  for (const r of ok) {
    const { relays, domains } = r.scenario;
    const ed = r.scenario.dkimAlgorithm === 'ed25519-sha256';
    const label = `${fmt(relays)} relays, ${fmt(domains)} domains${ed ? ' (ed25519)' : ''}`;
    const writes = r.convergence?.writesExceptLeases ?? NaN;
    const budget = 3 * domains + 12 * relays;
    out.push(
      `${label}: writes while converging (Leases excluded) ${fmt(writes)} ≤ 3 × ${fmt(domains)} + 12 × ${fmt(relays)} = ${fmt(budget)}: ${verdict(writes <= budget)}`,
    );
    const steadyWrites = r.steady?.writesExceptLeases ?? NaN;
    const cpu300 = ((r.usageSteady?.cpuSeconds ?? NaN) * 300) / Math.max(1, r.steadySeconds);
    out.push(
      `${label}: steady state ${fmt(steadyWrites)} writes but Leases (target 0): ${verdict(steadyWrites === 0)}; CPU ${fmt(cpu300, 1)} s per 300 s (target ≤ 10 s at 2 000 domains): ${verdict(cpu300 <= 10)}`,
    );
    if (ed) {
      const bound = domains >= 10_000 ? 300 : domains >= 2000 ? 60 : undefined;
      const rss = Math.max(r.usageConvergence?.peakRssBytes ?? 0, r.usageSteady?.peakRssBytes ?? 0) / MiB;
      if (bound !== undefined)
        out.push(
          `${label}: all Ready in ${fmt(r.convergeSeconds, 1)} s (target ≤ ${bound} s): ${verdict(r.convergeSeconds <= bound)}; peak RSS ${fmt(rss)} MiB (target ≤ 400): ${verdict(rss <= 400)}`,
        );
    } else if (domains > 10 && r.floor) {
      const base = ok.find(
        (x) => x.scenario.relays === relays && x.scenario.domains === 10 && !x.scenario.dkimAlgorithm,
      );
      if (base) {
        const bound = 1.25 * r.floor.seconds + base.convergeSeconds;
        out.push(
          `${label}: all Ready in ${fmt(r.convergeSeconds, 1)} s ≤ 1.25 × floor ${fmt(r.floor.seconds, 1)} s + the 10-domain time ${fmt(base.convergeSeconds, 1)} s = ${fmt(bound, 1)} s: ${verdict(r.convergeSeconds <= bound)}`,
        );
      }
    }
  }
  return out;
}

export function markdown(
  results: ScenarioResult[],
  meta: { command: string; loadavg: { start: number[]; end: number[] }; minutes: number },
): string {
  const out: string[] = [];
  const la = (v: number[]) => v.map((x) => x.toFixed(2)).join(' ');
  out.push('## Operator: convergence and API traffic at scale');
  out.push('');
  out.push(
    `Run ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}, ${meta.minutes.toFixed(0)} minutes, on the real control plane ` +
      `(test/cluster/: Kubernetes ${results.find((r) => r.kubernetesVersion)?.kubernetesVersion ?? '?'}, kwok nodes), ` +
      `a fresh cluster per row. The chart is installed with operator.replicas=0 and the operator runs from this ` +
      `repository with the chart's ServiceAccount token and leader election on. Objects are created with one ` +
      `\`kubectl create\`; Ready means Ready=True with status.observedGeneration = metadata.generation for every ` +
      `object. Requests are the operator ServiceAccount's, from the API server's audit log (one per audit ID).`,
  );
  out.push('');
  out.push(
    row([
      'SmtpRelays',
      'MailDomains',
      'all Ready (s)',
      'requests while converging',
      'writes while converging',
      'steady window (s)',
      'requests in steady state',
      'writes in steady state (Lease renewals excluded)',
      'CPU s converging',
      'CPU s steady',
      'peak RSS MiB',
      'crypto floor (s)',
    ]),
  );
  out.push(row(Array.from({ length: 12 }, () => '---:')));
  for (const r of results) {
    if (!r.ok) {
      out.push(
        row([
          fmt(r.scenario.relays),
          fmt(r.scenario.domains),
          `failed: ${(r.error ?? '').slice(0, 120)}`,
          '',
          '',
          '',
          '',
          '',
          '',
          '',
          '',
          '',
        ]),
      );
      continue;
    }
    out.push(
      row([
        fmt(r.scenario.relays),
        fmt(r.scenario.domains),
        fmt(r.convergeSeconds, 1),
        fmt(r.convergence?.total ?? NaN),
        fmt(r.convergence?.writes ?? NaN),
        fmt(r.steadySeconds),
        fmt(r.steady?.total ?? NaN),
        `${fmt(r.steady?.writesExceptLeases ?? NaN)} (${fmt((r.steady?.writes ?? 0) - (r.steady?.writesExceptLeases ?? 0))} Lease)`,
        fmt(r.usageConvergence?.cpuSeconds ?? NaN, 1),
        fmt(r.usageSteady?.cpuSeconds ?? NaN, 1),
        fmt(Math.max(r.usageConvergence?.peakRssBytes ?? 0, r.usageSteady?.peakRssBytes ?? 0) / MiB),
        r.floor ? fmt(r.floor.seconds, 1) : '–',
      ]),
    );
  }
  out.push('');
  out.push(
    'DKIM keys: ' +
      results
        .map((r) => `${fmt(r.scenario.domains)} domains ${r.scenario.dkimAlgorithm ?? 'rsa-sha256'}`)
        .join(', ') +
      '. The crypto floor is the time this machine takes to generate the same keys (per SmtpRelay a CA and a ' +
      'server key, RSA-2048; per MailDomain its DKIM key) with every core busy, measured in the same run ' +
      'just before the scenario’s cluster starts.',
  );
  out.push('');
  out.push('Targets (issue 13):');
  out.push('');
  for (const line of targets(results)) out.push(`- ${line}`);
  out.push('');
  out.push('Requests by verb:');
  out.push('');
  out.push(row(['SmtpRelays', 'MailDomains', 'window', ...VERBS]));
  out.push(row(['---:', '---:', '---', ...VERBS.map(() => '---:')]));
  for (const r of results.filter((x) => x.ok)) {
    for (const [name, c] of [
      ['operator start (before the objects)', r.startup],
      ['convergence', r.convergence],
      ['steady state', r.steady],
    ] as const)
      out.push(row([fmt(r.scenario.relays), fmt(r.scenario.domains), name, ...verbs(c)]));
  }
  out.push('');
  out.push('Writes by resource:');
  out.push('');
  for (const r of results.filter((x) => x.ok)) {
    out.push(
      `- ${r.scenario.relays} relays, ${r.scenario.domains} domains — convergence: ${writes(r.convergence)}; steady state: ${writes(r.steady)}`,
    );
  }
  out.push('');
  out.push('Reconciles (controller_runtime_reconcile_total at the end of the steady window):');
  out.push('');
  for (const r of results.filter((x) => x.ok)) {
    const rec = Object.entries(r.reconciles ?? {})
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    out.push(`- ${r.scenario.relays} relays, ${r.scenario.domains} domains: ${rec || '–'}`);
  }
  out.push('');
  const cpus = os.cpus();
  out.push(
    `Machine: ${cpus.length} × ${cpus[0]?.model ?? '?'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, kernel ${os.release()}, ` +
      `node ${process.versions.node}; load average ${la(meta.loadavg.start)} → ${la(meta.loadavg.end)}.`,
  );
  out.push('');
  out.push('```sh');
  out.push(meta.command);
  out.push('```');
  return out.join('\n');
}
