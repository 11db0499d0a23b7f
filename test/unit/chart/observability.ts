/**
 * What the chart's alerts and dashboards query, read with Prometheus's own PromQL grammar
 * (@prometheus-io/lezer-promql): every metric name in every rule expression and dashboard target (and
 * variable query), with where it is used. Shared by the static check (names against the metric
 * definitions), the integration test (names against a running relay's /metrics) and the e2e test
 * (names against a running operator's /metrics).
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import YAML from 'yaml';

export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const CHART_DIR = path.join(REPO_ROOT, 'charts', 'mailfleet');
export const RULES_FILE = path.join(CHART_DIR, 'rules', 'mailfleet.rules.yaml');
export const DASHBOARDS_DIR = path.join(CHART_DIR, 'dashboards');

/** Series that come from Prometheus itself, not from an exporter. */
export const PROMETHEUS_SERIES = new Set(['up']);

/** Grafana's built-in variables, replaced by something PromQL parses. */
function ungrafana(expr: string): string {
  return expr
    .replace(/\$__(rate_interval|interval|range)/g, '5m')
    .replace(/\$\{?[a-zA-Z_]\w*\}?/g, 'x')
    .replace(/^label_values\((.*),\s*\w+\)$/s, '$1')
    .replace(/^label_values\((\w+)\)$/s, '$1');
}

/** Metric names in one PromQL expression. Throws when the expression does not parse. */
export function metricNames(expr: string): string[] {
  const text = ungrafana(expr.trim());
  const tree = parser.parse(text);
  const names = new Set<string>();
  let error: string | undefined;
  tree.iterate({
    enter(node) {
      if (node.type.isError)
        error ??= `syntax error at ${node.from}: ${text.slice(node.from, node.from + 30)}`;
      if (node.name === 'VectorSelector') {
        const id = node.node.getChild('Identifier');
        if (id) names.add(text.slice(id.from, id.to));
      }
    },
  });
  if (error) throw new Error(`${error} in ${expr}`);
  return [...names];
}

export interface Usage {
  name: string;
  where: string;
  expr: string;
}

export interface RuleFile {
  groups: Array<{
    name: string;
    rules: Array<{ alert: string; expr: string; labels?: Record<string, string> }>;
  }>;
}

export function readRules(): RuleFile {
  return YAML.parse(readFileSync(RULES_FILE, 'utf8')) as RuleFile;
}

export function dashboardFiles(): string[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .map((f) => path.join(DASHBOARDS_DIR, f));
}

interface DashboardPanel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: DashboardPanel[];
}

/** Every PromQL expression of a dashboard: panel targets and query variables. */
export function dashboardExprs(file: string): Array<{ where: string; expr: string }> {
  const d = JSON.parse(readFileSync(file, 'utf8')) as {
    panels: DashboardPanel[];
    templating: { list: Array<{ name: string; type: string; query?: { query?: string } | string }> };
  };
  const out: Array<{ where: string; expr: string }> = [];
  const base = path.basename(file);
  const walk = (ps: DashboardPanel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? [])
        if (t.expr) out.push({ where: `${base}: panel "${p.title}"`, expr: t.expr });
      if (p.panels) walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (q) out.push({ where: `${base}: variable $${v.name}`, expr: q });
  }
  return out;
}

/** Every metric referenced by the alert rules and the dashboards, with where. */
export function referencedMetrics(): Usage[] {
  const out: Usage[] = [];
  for (const g of readRules().groups)
    for (const r of g.rules)
      for (const name of metricNames(r.expr)) out.push({ name, where: `alert ${r.alert}`, expr: r.expr });
  for (const file of dashboardFiles())
    for (const { where, expr } of dashboardExprs(file))
      for (const name of metricNames(expr)) out.push({ name, where, expr });
  return out;
}

/** Series names in Prometheus text exposition format (histograms show as _bucket/_sum/_count). */
export function exposedSeries(metricsText: string): Set<string> {
  const names = new Set<string>();
  for (const line of metricsText.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (m) names.add(m[1]!);
  }
  return names;
}

/** Referenced names missing from `available`, as readable lines ("name (where)"). */
export function missing(usages: Usage[], available: Set<string>): string[] {
  return [
    ...new Set(
      usages
        .filter((u) => !available.has(u.name) && !PROMETHEUS_SERIES.has(u.name))
        .map((u) => `${u.name} (${u.where})`),
    ),
  ].sort();
}
