/**
 * The external programs the chart tests run: promtool (test/tools/promtool/build.sh) and helm (the
 * control-plane harness's build, test/cluster/build.sh). Neither is built here: a missing build fails the
 * test with the command that builds it (scripts/test.sh builds both before the tests).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { locateBinaries } from '../../cluster/cluster.js';
import { REPO_ROOT } from './observability.js';

export function promtool(): string {
  const script = path.join(REPO_ROOT, 'test/tools/promtool/build.sh');
  const r = spawnSync('bash', [script, '--locate'], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(
      `promtool is not built: run \`bash test/tools/promtool/build.sh\`\n${r.stderr ?? ''}`.trimEnd(),
    );
  return r.stdout.trim();
}

/** The harness's helm, or $MAILFLEET_HELM (a helm 3.8+/4 binary) when set. */
export function helm(): string {
  return process.env.MAILFLEET_HELM || path.join(locateBinaries(), 'helm');
}

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function run(bin: string, args: string[], input?: string): Run {
  const r = spawnSync(bin, args, {
    encoding: 'utf8',
    input,
    cwd: REPO_ROOT,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 120_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: '/tmp/mailfleet-helm-cache',
      HELM_CONFIG_HOME: '/tmp/mailfleet-helm-config',
    },
  });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
}
