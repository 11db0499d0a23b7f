/**
 * The chart renders what it promises: `helm lint`, the default install (operator Deployment with 2
 * replicas, leader election, probes, hardened security, ClusterRole from the generated rules), the
 * namespaced mode (Roles per namespace with the same rules, nothing cluster-wide), monitoring objects
 * only when the cluster serves monitoring.coreos.com/v1 and values ask, the PrometheusRule equal to
 * rules/mailfleet.rules.yaml, dashboards as sidecar ConfigMaps, and values.schema.json errors that name
 * the field. helm comes from the control-plane harness build (see tools.ts).
 */
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-return -- rendered manifests are untyped YAML */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { CLUSTER_RULES } from '../../../operator/gen/rbac.js';
import { CHART_DIR, dashboardFiles, readRules } from './observability.js';
import { helm, run } from './tools.js';

type Obj = Record<string, any>;

const MONITORING = [
  '--api-versions',
  'monitoring.coreos.com/v1/ServiceMonitor',
  '--api-versions',
  'monitoring.coreos.com/v1/PodMonitor',
  '--api-versions',
  'monitoring.coreos.com/v1/PrometheusRule',
];

describe('helm chart', () => {
  const bin = helm();

  function template(args: string[] = []): Obj[] {
    const r = run(bin, ['template', 'mf', CHART_DIR, '--namespace', 'mailfleet-system', ...args]);
    if (r.code !== 0) throw new Error(`helm template failed: ${r.stderr}`);
    return YAML.parseAllDocuments(r.stdout)
      .map((d) => d.toJSON() as Obj | null)
      .filter((d): d is Obj => !!d);
  }
  const find = (objs: Obj[], kind: string, name?: string) =>
    objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));

  it('passes helm lint (strict), with and without monitoring values', () => {
    for (const extra of [[], ['--set', 'prometheusRule.enabled=true,metrics.serviceMonitor.enabled=true']]) {
      const r = run(bin, ['lint', '--strict', CHART_DIR, ...extra]);
      expect([r.code, r.stdout + r.stderr]).toEqual([0, expect.stringContaining('0 chart(s) failed')]);
    }
  });

  it('renders the operator: 2 replicas, leader election, probes, hardened pod, metrics Service, PDB', () => {
    const objs = template();
    const [deploy] = find(objs, 'Deployment');
    expect(deploy!.spec.replicas).toBe(2);
    const pod = deploy!.spec.template.spec;
    const c = pod.containers[0];
    expect(c.command).toEqual(['mailfleet-operator']);
    expect(c.image).toBe('ghcr.io/mailfleet/mailfleet:0.1.0');
    expect(c.args).toEqual(
      expect.arrayContaining([
        '--leader-elect=true',
        '--leader-election-namespace=mailfleet-system',
        '--relay-image=ghcr.io/mailfleet/mailfleet:0.1.0',
        '--metrics-bind-address=:8080',
        '--health-probe-bind-address=:8081',
      ]),
    );
    expect(c.args.some((a: string) => a.startsWith('--namespaces'))).toBe(false);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'probes' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'probes' });
    expect(c.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(c.resources.limits.memory).toBeDefined();
    expect(pod.serviceAccountName).toBe('mf-mailfleet-operator');
    const [svc] = find(objs, 'Service', 'mf-mailfleet-operator-metrics');
    expect(svc!.spec.selector).toEqual(deploy!.spec.selector.matchLabels);
    expect(find(objs, 'PodDisruptionBudget')).toHaveLength(1);
    // No monitoring objects without the Prometheus Operator's API.
    expect(objs.filter((o) => String(o.apiVersion).startsWith('monitoring.coreos.com'))).toEqual([]);
  });

  it('grants the generated rules cluster-wide by default', () => {
    const objs = template();
    const [role] = find(objs, 'ClusterRole');
    expect(role!.rules).toEqual(CLUSTER_RULES);
    const [binding] = find(objs, 'ClusterRoleBinding');
    expect(binding!.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'mf-mailfleet-operator', namespace: 'mailfleet-system' },
    ]);
    expect(find(objs, 'Role').map((r) => r.metadata.name)).toEqual(['mf-mailfleet-leader-election']);
  });

  it('with watchNamespaces: a Role with the same rules per namespace, nothing cluster-wide', () => {
    const objs = template(['--set', 'operator.watchNamespaces={team-a,team-b}']);
    expect(find(objs, 'ClusterRole')).toEqual([]);
    expect(find(objs, 'ClusterRoleBinding')).toEqual([]);
    const roles = find(objs, 'Role', 'mf-mailfleet-operator');
    expect(roles.map((r) => r.metadata.namespace)).toEqual(['team-a', 'team-b']);
    for (const r of roles) expect(r.rules).toEqual(CLUSTER_RULES);
    const bindings = find(objs, 'RoleBinding', 'mf-mailfleet-operator');
    expect(bindings.map((b) => [b.metadata.namespace, b.roleRef.kind, b.subjects[0].namespace])).toEqual([
      ['team-a', 'Role', 'mailfleet-system'],
      ['team-b', 'Role', 'mailfleet-system'],
    ]);
    const [deploy] = find(objs, 'Deployment');
    expect(deploy!.spec.template.spec.containers[0].args).toContain('--namespaces=team-a,team-b');
  });

  it('renders monitors and rules only when asked and served, with the release label', () => {
    const values = [
      '--set',
      'metrics.serviceMonitor.enabled=true,metrics.podMonitor.enabled=true,prometheusRule.enabled=true',
      '--set',
      'metrics.serviceMonitor.labels.release=prometheus,prometheusRule.labels.release=prometheus',
    ];
    expect(template(values).filter((o) => String(o.apiVersion).startsWith('monitoring'))).toEqual([]);
    const objs = template([...values, ...MONITORING]);
    const [sm] = find(objs, 'ServiceMonitor');
    expect(sm!.metadata.labels.release).toBe('prometheus');
    expect(sm!.spec.jobLabel).toBe('mailfleet.dev/metrics-job');
    const [svc] = find(objs, 'Service', 'mf-mailfleet-operator-metrics');
    expect(svc!.metadata.labels['mailfleet.dev/metrics-job']).toBe('mailfleet-operator');
    expect(sm!.spec.selector.matchLabels).toEqual(
      expect.objectContaining({ 'mailfleet.dev/metrics-job': 'mailfleet-operator' }),
    );
    expect(sm!.spec.endpoints[0].port).toBe('metrics');
    const [pm] = find(objs, 'PodMonitor');
    expect(pm!.spec.podMetricsEndpoints[0].port).toBe('metrics');
    const [deploy] = find(objs, 'Deployment');
    expect(deploy!.spec.template.metadata.labels['mailfleet.dev/metrics-job']).toBe('mailfleet-operator');
    expect(find(objs, 'PrometheusRule')[0]!.metadata.labels.release).toBe('prometheus');
  });

  it('puts exactly rules/mailfleet.rules.yaml into the PrometheusRule, with values applied', () => {
    const base = ['--set', 'prometheusRule.enabled=true,metrics.serviceMonitor.enabled=true', ...MONITORING];
    const [rule] = find(template(base), 'PrometheusRule');
    expect(rule!.spec.groups).toEqual(readRules().groups);

    const [tuned] = find(
      template([
        ...base,
        '--set',
        'prometheusRule.disabledAlerts={MailfleetRelayBounceRateHigh},prometheusRule.additionalAlertLabels.team=mail',
        '--set',
        'prometheusRule.runbookBaseUrl=https://wiki.example.com/mail/',
      ]),
      'PrometheusRule',
    );
    const rules = tuned!.spec.groups.flatMap((g: Obj) => g.rules);
    expect(rules.map((r: Obj) => r.alert)).not.toContain('MailfleetRelayBounceRateHigh');
    expect(rules.length).toBe(readRules().groups.flatMap((g) => g.rules).length - 1);
    for (const r of rules) {
      expect(r.labels.team).toBe('mail');
      expect(r.labels.severity).toMatch(/warning|critical/);
      expect(r.annotations.runbook_url).toMatch(/^https:\/\/wiki\.example\.com\/mail\/operations\.md#/);
    }
    // Without an operator monitor, the "operator absent" alert would always fire: it is left out.
    const [noMonitor] = find(
      template(['--set', 'prometheusRule.enabled=true', ...MONITORING]),
      'PrometheusRule',
    );
    expect(noMonitor!.spec.groups.flatMap((g: Obj) => g.rules).map((r: Obj) => r.alert)).not.toContain(
      'MailfleetOperatorAbsent',
    );
  });

  it('ships every dashboard file as a ConfigMap for the Grafana sidecar', () => {
    const cms = find(template(['--set', 'dashboards.annotations.grafana_folder=Mail']), 'ConfigMap');
    expect(cms).toHaveLength(dashboardFiles().length);
    for (const cm of cms) {
      expect(cm.metadata.labels.grafana_dashboard).toBe('1');
      expect(cm.metadata.annotations.grafana_folder).toBe('Mail');
      const [key, json] = Object.entries(cm.data as Record<string, string>)[0]!;
      const file = dashboardFiles().find((f) => key === `mailfleet-${path.basename(f)}`)!;
      expect(JSON.parse(json)).toEqual(JSON.parse(readFileSync(file, 'utf8')));
    }
    expect(find(template(['--set', 'dashboards.enabled=false']), 'ConfigMap')).toEqual([]);
  });

  it.each([
    [['--set', 'operator.logLevel=loud'], "at '/operator/logLevel'"],
    [['--set', 'operator.replica=3'], "additional properties 'replica' not allowed"],
    [['--set', 'operator.syncPeriod=10'], "at '/operator/syncPeriod'"],
    [['--set', 'operator.watchNamespaces={Team_A}'], "at '/operator/watchNamespaces/0'"],
    [['--set', 'image.pullPolicy=Sometimes'], "at '/image/pullPolicy'"],
    [
      ['--set', 'operator.leaderElection.enabled=false'],
      'operator.replicas > 1 needs operator.leaderElection',
    ],
  ])('refuses wrong values with a message naming the field: %j', (args, message) => {
    const r = run(bin, ['template', 'mf', CHART_DIR, ...args]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(message);
  });

  it('prints next steps in NOTES (SmtpRelay, MailDomain, credentials Secret, dashboards)', () => {
    const r = run(bin, ['install', 'mf', CHART_DIR, '--dry-run=client', '--namespace', 'mailfleet-system']);
    expect(r.code).toBe(0);
    const notes = r.stdout.slice(r.stdout.indexOf('NOTES:'));
    for (const s of [
      'examples/smtprelay.yaml',
      'examples/maildomain.yaml',
      'mail-credentials',
      'grafana_dashboard',
    ])
      expect(notes).toContain(s);
  });
});
