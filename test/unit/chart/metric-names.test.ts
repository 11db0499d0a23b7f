/**
 * Every metric named in the alert rules and dashboards is defined by the relay (relay/metrics.ts) or the
 * operator (operator/runtime/metrics.ts), or is a Node.js process metric both export. The same check
 * runs against live /metrics in test/integration/observability.test.ts (relay) and
 * test/e2e/chart.test.ts (operator), which also catches a metric that is defined but never exported.
 */
import { Registry, collectDefaultMetrics } from 'prom-client';
import { operatorMetricInfo, relayMetricInfo, seriesNames } from '../../../docs/gen/metrics-reference.js';
import { metricNames, missing, referencedMetrics } from './observability.js';

function defined(): Set<string> {
  const names = new Set<string>();
  for (const m of [...relayMetricInfo(), ...operatorMetricInfo()])
    seriesNames(m).forEach((n) => names.add(n));
  const process = new Registry();
  collectDefaultMetrics({ register: process });
  for (const m of process.getMetricsAsArray()) {
    const any = m as unknown as { name: string; constructor: { name: string } };
    seriesNames({ name: any.name, type: any.constructor.name.toLowerCase() }).forEach((n) => names.add(n));
  }
  return names;
}

describe('metric names in alerts and dashboards', () => {
  const usages = referencedMetrics();

  it('finds the metrics of every query (the PromQL parser sees them)', () => {
    expect(metricNames('sum by (le) (rate(a_bucket{x="1"}[5m])) / on (pod) b - time()')).toEqual([
      'a_bucket',
      'b',
    ]);
    expect(metricNames('label_values(mailfleet_relay_ready{namespace=~"$namespace"}, job)')).toEqual([
      'mailfleet_relay_ready',
    ]);
    expect(() => metricNames('sum(rate(x[5m])')).toThrow(/syntax error/);
    const names = new Set(usages.map((u) => u.name));
    expect(names.size).toBeGreaterThan(30);
    expect(names).toContain('mailfleet_relay_tls_certificate_expiry_timestamp_seconds');
    expect(names).toContain('leader_election_master_status');
    expect(names).toContain('controller_runtime_reconcile_time_seconds_bucket');
  });

  it('names only metrics the relay and the operator define', () => {
    expect(missing([{ name: 'mailfleet_relay_bogus', where: 'here', expr: '' }], defined())).toEqual([
      'mailfleet_relay_bogus (here)',
    ]);
    expect(missing(usages, defined())).toEqual([]);
  });

  it('uses every relay metric somewhere (a metric nobody looks at is a gap in the pack)', () => {
    const used = new Set(usages.map((u) => u.name));
    const unused = relayMetricInfo()
      .filter((m) => !seriesNames(m).some((n) => used.has(n)))
      .map((m) => m.name);
    expect(unused).toEqual([]);
  });
});
