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
    ]),
  );
  out.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
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
      ]),
    );
  }
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
