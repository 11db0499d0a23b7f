/**
 * The Dockerfile, checked statically (no Docker engine runs here): it passes dockerfile-utils' linter
 * (the VS Code Docker extension's checks: instructions, arguments, flags), and has the essentials:
 * multi-stage, a pinned Node 24 base (replaceable by scripts/image.sh's stand-in), `npm ci --omit=dev` for
 * the runtime's dependencies, no package manager left in the runtime, the spool as a volume, a numeric
 * non-root USER, both entry points on PATH, nothing secret copied or set. test/image/ builds and runs it. And the image reference is the
 * same everywhere: package.json version = Chart appVersion = Dockerfile VERSION = the operator's default
 * relay image tag, and the chart's repository = the operator's default repository.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { validate } from 'dockerfile-utils';
import YAML from 'yaml';
import { DEFAULT_RELAY_IMAGE } from '../../../operator/flags.js';
import { PATHS } from '../../../operator/smtprelay/names.js';
import { CHART_DIR, REPO_ROOT } from './observability.js';

const dockerfile = readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8');
/** Instructions with continuation lines joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'))
  .map((l) => {
    const [op, ...rest] = l.split(/\s+/);
    return { op: op!.toUpperCase(), args: rest.join(' ') };
  });
const stages = instructions.filter((i) => i.op === 'FROM');
const args = Object.fromEntries(
  instructions
    .filter((i) => i.op === 'ARG' && i.args.includes('='))
    .map((i) => i.args.split('=') as [string, string]),
);
const dockerignore = readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));
const finalStage = instructions.slice(instructions.lastIndexOf(stages[stages.length - 1]!));

describe('Dockerfile', () => {
  it('passes the dockerfile-utils linter', () => {
    expect(
      validate(dockerfile, {}).map(
        (d) =>
          `line ${d.range.start.line + 1}: ${typeof d.message === 'string' ? d.message : d.message.value}`,
      ),
    ).toEqual([]);
  });

  it('is multi-stage on a pinned Node 24 slim base, the version scripts/node.sh provisions', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    // Every stage starts from BASE_IMAGE: the official image by default, scripts/image.sh's stand-in here.
    for (const s of stages) expect(s.args).toMatch(/^\$\{BASE_IMAGE\}( AS \w+)?$/);
    expect(args.BASE_IMAGE).toMatch(/^docker\.io\/library\/node:\$\{NODE_VERSION\}-[a-z]+-slim$/);
    const nodeSh = readFileSync(path.join(REPO_ROOT, 'scripts/node.sh'), 'utf8');
    const provisioned = /MAILFLEET_NODE_VERSION:-([0-9.]+)/.exec(nodeSh)![1];
    expect(args.NODE_VERSION).toBe(provisioned);
    expect(args.NODE_VERSION).toMatch(/^24\.\d+\.\d+$/);
  });

  it('installs production dependencies with npm ci --omit=dev and builds in another stage', () => {
    expect(instructions.some((i) => i.op === 'RUN' && /npm ci\b.*--omit=dev/.test(i.args))).toBe(true);
    expect(instructions.some((i) => i.op === 'RUN' && /npm run build/.test(i.args))).toBe(true);
    expect(finalStage.some((i) => i.op === 'RUN' && /npm (ci|install|run)/.test(i.args))).toBe(false);
    expect(
      finalStage
        .filter((i) => i.op === 'COPY')
        .every((i) => i.args.startsWith('--from=') || i.args === 'package.json ./'),
    ).toBe(true);
  });

  it('leaves the base package managers out of the runtime, and the build CA argument in the build stages', () => {
    const removed = finalStage
      .filter((i) => i.op === 'RUN' && i.args.startsWith('rm -rf'))
      .flatMap((i) => i.args.split(/\s+/));
    for (const p of [
      '/usr/local/bin/npm',
      '/usr/local/bin/npx',
      '/usr/local/bin/corepack',
      '/usr/local/bin/yarn',
      '/usr/local/bin/yarnpkg',
      '/usr/local/lib/node_modules/npm',
      '/usr/local/lib/node_modules/corepack',
      '/opt/yarn-v*',
    ])
      expect(removed).toContain(p);
    expect(finalStage.some((i) => i.op === 'ARG' && i.args.startsWith('NODE_EXTRA_CA_CERTS'))).toBe(false);
  });

  it('keeps the queue in a volume at the relay spool path, which is also the working directory', () => {
    const last = (op: string) => finalStage.filter((i) => i.op === op).pop()?.args;
    expect(last('VOLUME')).toBe(JSON.stringify([PATHS.spoolDir]));
    expect(last('WORKDIR')).toBe(PATHS.spoolDir);
    expect(dockerfile).toContain(`chown 65532:65532 ${PATHS.spoolDir}`);
  });

  it('runs as a numeric non-root user', () => {
    const users = finalStage.filter((i) => i.op === 'USER');
    expect(users.length).toBeGreaterThan(0);
    expect(users[users.length - 1]!.args).toMatch(/^[1-9]\d*(:[1-9]\d*)?$/);
    // The same uid the chart and the relay pods run as.
    const values = YAML.parse(readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8'));
    expect(users[users.length - 1]!.args.split(':')[0]).toBe(
      String(values.operator.podSecurityContext.runAsUser),
    );
  });

  it('puts mailfleet-relay and mailfleet-operator on PATH, pointing at the package bin entries', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    for (const [cmd, file] of Object.entries(pkg.bin as Record<string, string>)) {
      expect(dockerfile).toContain(`ln -s /app/${file} /usr/local/bin/${cmd}`);
      const src = readFileSync(
        path.join(REPO_ROOT, file.replace(/^dist\//, '').replace(/\.js$/, '.ts')),
        'utf8',
      );
      expect(src.startsWith('#!/usr/bin/env node')).toBe(true);
    }
  });

  it('copies and sets nothing secret', () => {
    expect(dockerfile).not.toMatch(/\.npmrc|id_rsa|\.pem\b|\.key\b|\bsecret|token|password/i);
    for (const i of instructions.filter((x) => x.op === 'ENV' || x.op === 'ARG'))
      expect(i.args).not.toMatch(/key|secret|token|password/i);
    expect(dockerignore[0]).toBe('**');
  });

  it('has in its build context every file that the compiled sources import', () => {
    // .dockerignore: "**", then "!root" lines let roots in, other lines keep paths out again.
    const roots = dockerignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    const excluded = dockerignore.filter((l) => l !== '**' && !l.startsWith('!'));
    const pattern = (glob: string) =>
      new RegExp(
        '^' +
          glob
            .replace(/\/$/, '/**')
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*\*\//g, '(.*/)?')
            .replace(/\*\*/g, '.*')
            .replace(/\*/g, '[^/]*') +
          '$',
      );
    const inContext = (rel: string) =>
      roots.some((r) => rel === r || rel.startsWith(`${r}/`)) && !excluded.some((g) => pattern(g).test(rel));
    const missing: string[] = [];
    for (const root of roots.filter((r) => statSync(path.join(REPO_ROOT, r)).isDirectory())) {
      for (const rel of readdirSync(path.join(REPO_ROOT, root), { recursive: true }) as string[]) {
        const file = path.join(root, rel);
        if (!file.endsWith('.ts') || !inContext(file)) continue;
        const src = readFileSync(path.join(REPO_ROOT, file), 'utf8');
        for (const [, spec] of src.matchAll(/from '(\.{1,2}\/[^']+)'/g)) {
          const target = path.join(path.dirname(file), spec!).replace(/\.js$/, '.ts');
          if (!inContext(target)) missing.push(`${file} imports ${target}`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('image reference', () => {
  it('agrees between package.json, Chart.yaml, values.yaml, the Dockerfile and the operator default', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
    const chart = YAML.parse(readFileSync(path.join(CHART_DIR, 'Chart.yaml'), 'utf8'));
    const values = YAML.parse(readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8'));
    expect(chart.appVersion).toBe(pkg.version);
    expect(args.VERSION).toBe(pkg.version);
    expect(values.image.tag).toBe('');
    expect(DEFAULT_RELAY_IMAGE).toBe(`${values.image.repository}:${pkg.version}`);
    expect(dockerfile).toContain(`docker build -t ${DEFAULT_RELAY_IMAGE} .`);
  });
});
