/**
 * The alert rules pass `promtool check rules`, and `promtool test rules` fires each alert on synthetic
 * series (rules/mailfleet.rules.test.yaml). Every alert must have at least one firing case there.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { REPO_ROOT, RULES_FILE, readRules } from './observability.js';
import { promtool, run } from './tools.js';

const TESTS_FILE = path.join(__dirname, 'rules', 'mailfleet.rules.test.yaml');

describe('alert rules (promtool)', () => {
  const bin = promtool();

  it('pass promtool check rules', () => {
    const r = run(bin, ['check', 'rules', RULES_FILE]);
    expect(`${r.stdout}${r.stderr}`).toContain('SUCCESS');
    expect(r.code).toBe(0);
  });

  it('pass their promtool unit tests', () => {
    const r = run(bin, ['test', 'rules', TESTS_FILE]);
    if (r.code !== 0) throw new Error(`promtool test rules failed:\n${r.stdout}${r.stderr}`);
    expect(r.stdout).toContain('SUCCESS');
  });

  it('have a firing test case for every alert, and every alert a severity and runbook', () => {
    const tests = YAML.parse(readFileSync(TESTS_FILE, 'utf8')) as {
      tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }>;
    };
    const fired = new Set(
      tests.tests.flatMap((t) =>
        t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname),
      ),
    );
    const rules = readRules().groups.flatMap((g) => g.rules) as Array<{
      alert: string;
      labels?: Record<string, string>;
      annotations?: Record<string, string>;
    }>;
    expect(rules.map((r) => r.alert).filter((a) => !fired.has(a))).toEqual([]);
    for (const r of rules) {
      expect([r.alert, r.labels?.severity]).toEqual([r.alert, expect.stringMatching(/^(warning|critical)$/)]);
      expect([r.alert, r.annotations?.runbook_url]).toEqual([
        r.alert,
        expect.stringMatching(/operations\.md#/),
      ]);
    }
  });

  it('link runbooks to sections that exist in docs/operations.md', () => {
    const guide = readFileSync(path.join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const slugs = new Set(
      [...guide.matchAll(/^#+ (.+)$/gm)].map((m) =>
        m[1]!
          .toLowerCase()
          .replace(/[^a-z0-9 -]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    const anchors = readRules()
      .groups.flatMap((g) => g.rules as Array<{ annotations?: Record<string, string> }>)
      .map((r) => r.annotations!.runbook_url!.split('#')[1]!);
    expect(anchors.filter((a) => !slugs.has(a))).toEqual([]);
  });
});
