/**
 * The metrics the chart's alerts and dashboards query are what a running relay serves: the relay runs
 * as a real process (built dist/, TLS on, every listener on a free loopback port) and every metric
 * name referenced by charts/mailfleet/rules and charts/mailfleet/dashboards that is not an operator
 * metric must be on its /metrics. Labelled metrics with no observation yet show only as "# TYPE" lines,
 * which count: they are exported, with their first sample on first use. The operator's half of this
 * check runs against a live operator in test/e2e/chart.test.ts.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { operatorMetricInfo, seriesNames } from '../../docs/gen/metrics-reference.js';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';
import { exposedSeries, missing, referencedMetrics } from '../unit/chart/observability.js';

jest.setTimeout(60_000);

let relay: RelayProcess;

beforeAll(async () => {
  const dir = await makeTempDir();
  const ca = makeCa();
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { app: 'app-secret' });
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: {
        submission: { address: '127.0.0.1', port: 0 },
        smtps: { address: '127.0.0.1', port: 0 },
        relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.0/8'] },
      },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: { usersFile: 'users' },
    }),
  });
});

afterAll(async () => {
  await relay?.stop();
});

/** Series names a /metrics page declares: samples, plus every "# TYPE" (histograms as _bucket/_sum/_count). */
function declaredSeries(text: string): Set<string> {
  const names = exposedSeries(text);
  for (const m of text.matchAll(/^# TYPE (\S+) (\w+)$/gm))
    seriesNames({ name: m[1]!, type: m[2]! }).forEach((n) => names.add(n));
  return names;
}

it('serves every relay metric the alerts and dashboards use', async () => {
  const page = await relay.admin('/metrics');
  expect(page.status).toBe(200);
  await fs.writeFile(path.join(relay.dir, 'metrics.txt'), page.body);
  const operatorSeries = new Set(operatorMetricInfo().flatMap(seriesNames));
  const relayUsages = referencedMetrics().filter((u) => !operatorSeries.has(u.name));
  expect(relayUsages.length).toBeGreaterThan(20);
  expect(missing(relayUsages, declaredSeries(page.body))).toEqual([]);
});

it('exports the certificate expiry of the certificate in use (what the expiry alert reads)', async () => {
  const expiry = await relay.metric('mailfleet_relay_tls_certificate_expiry_timestamp_seconds');
  expect(expiry).toBeGreaterThan(Date.now() / 1000);
  expect(await relay.metric('mailfleet_relay_ready')).toBe(1);
  expect(await relay.metric('mailfleet_relay_config_last_reload_successful')).toBe(1);
  expect(await relay.metric('mailfleet_relay_spool_messages', { state: 'ready' })).toBe(0);
});
