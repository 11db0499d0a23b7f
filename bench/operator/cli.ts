/**
 * `npm run bench:operator [-- options]`: the operator at scale against the real control plane; prints
 * the tables and rewrites the operator section of bench/RESULTS.md.
 *
 *   --relays N            SmtpRelays per scenario (100)
 *   --domains LIST        MailDomains per scenario, one scenario each (10,100,1000,2000); N:ed25519-sha256
 *                         gives one scenario that DKIM algorithm
 *   --steady-seconds N    steady-state window after convergence (300)
 *   --results FILE        Markdown to update (bench/RESULTS.md); --no-results to leave it alone
 *   --keep-logs           keep each cluster's logs (audit log included) in the work directory
 *   --dkim-algorithm A    spec.dkim.algorithm of the MailDomains (rsa-sha256, the default, or ed25519-sha256)
 *   --no-floor            skip the crypto floor (the keys of the scenario generated on every core first)
 *   --operator-cli FILE   the operator to run (dist/bench/operator/cli.js: this checkout)
 *   --node-arg ARG        a node argument for the operator, repeatable (--node-arg=--cpu-prof)
 *
 * Needs the control-plane binaries (`npm run cluster:build`, about 10 minutes cold) and helm's chart in
 * charts/mailfleet. Each scenario starts and stops its own cluster.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { exitOnSignals, repoRoot, runMain } from '../lib/proc.js';
import { replaceSection } from '../relay/report.js';
import { runOperatorBench, type Scenario } from './bench.js';
import { markdown } from './report.js';

async function main(): Promise<number> {
  exitOnSignals();
  const { values } = parseArgs({
    options: {
      relays: { type: 'string', default: '100' },
      domains: { type: 'string', default: '10,100,1000,2000' },
      'steady-seconds': { type: 'string', default: '300' },
      results: { type: 'string', default: 'bench/RESULTS.md' },
      'no-results': { type: 'boolean', default: false },
      'keep-logs': { type: 'boolean', default: false },
      'work-dir': { type: 'string' },
      'dkim-algorithm': { type: 'string' },
      'no-floor': { type: 'boolean', default: false },
      'operator-cli': { type: 'string' },
      'node-arg': { type: 'string', multiple: true },
    },
  });
  const root = repoRoot();
  const workDir = values['work-dir'] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mailfleet-bench-operator-'));
  const started = Date.now();
  const say = (line: string) =>
    console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(5)} s] ${line}`);
  const scenarios = values.domains.split(',').map((d) => {
    const [n, alg] = d.split(':');
    return {
      relays: Number(values.relays),
      domains: Number(n),
      steadyMs: Number(values['steady-seconds']) * 1000,
      dkimAlgorithm: (alg ?? values['dkim-algorithm']) as Scenario['dkimAlgorithm'],
    };
  });
  const loadStart = os.loadavg();
  const results = await runOperatorBench({
    repoRoot: root,
    workDir,
    operatorCli: values['operator-cli'] ?? path.join(root, 'dist/bench/operator/cli.js'),
    nodeArgs: values['node-arg'],
    floor: !values['no-floor'],
    scenarios,
    keepLogs: values['keep-logs'],
    log: say,
  });
  const md = markdown(results, {
    command: `npm run bench:operator${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    loadavg: { start: loadStart, end: os.loadavg() },
    minutes: (Date.now() - started) / 60000,
  });
  console.log(md);
  if (!values['no-results']) {
    const file = path.resolve(root, values.results);
    const doc = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '# Benchmark results\n';
    fs.writeFileSync(file, replaceSection(doc, 'bench:operator', md));
    say(`wrote ${path.relative(root, file)}`);
  }
  if (!values['keep-logs']) fs.rmSync(workDir, { recursive: true, force: true });
  return results.every((r) => r.ok) ? 0 : 1;
}

runMain(main);
