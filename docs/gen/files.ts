/**
 * The files generated from the chart's and docs' sources, as path (relative to the repo root) → content:
 * dashboards, the chart README (values table), the API and metrics references. operator/gen/files.ts
 * adds them to `npm run generate`, whose freshness test then covers them too.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { apiReference } from './api-reference.js';
import { chartReadme } from './chart-readme.js';
import { dashboardFiles } from './dashboards.js';
import { metricsReference } from './metrics-reference.js';

export function docsGeneratedFiles(root: string = process.cwd()): Map<string, string> {
  const read = (rel: string) => readFileSync(join(root, rel), 'utf8');
  const files = new Map<string, string>(dashboardFiles());
  files.set(
    'charts/mailfleet/README.md',
    chartReadme(read('charts/mailfleet/values.yaml'), read('charts/mailfleet/Chart.yaml')),
  );
  files.set('docs/api-reference.md', apiReference());
  files.set('docs/metrics.md', metricsReference());
  return files;
}
