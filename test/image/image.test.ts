/**
 * The image as its users meet it: built from the Dockerfile by scripts/image.sh (this project's
 * globalSetup) and run with podman. Its configuration, the OCI archive that `ctr images import` reads,
 * the Node it runs on, both commands, what is not in it, and the relay running on a read-only root file
 * system (as Kubernetes runs it: all capabilities dropped, no new privileges) that takes a message over
 * SMTP from swaks, queues it on the spool volume and delivers it to the MX that the test's DNS names.
 *
 * The relay's container has no network but loopback (`--network none`); the test DNS server, the
 * downstream SMTP server (test/helpers) and swaks run inside its network namespace through nsenter, so
 * every address is 127.0.0.1 in a namespace this test made.
 *
 * Every container gets modest RLIMIT_NOFILE/NPROC: podman's defaults raise them above this machine's
 * hard limits, which needs CAP_SYS_RESOURCE (not held here), and runc then fails with "error setting
 * rlimits for ready process: operation not permitted". Kubernetes (containerd) sets none.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import YAML from 'yaml';
import { FatalWaitError, run, waitFor, type RunResult } from '../cluster/proc.js';
import { makeCa, makeCert } from '../helpers/tls.js';
import { a, mx } from '../helpers/dns.js';

jest.setTimeout(180_000);

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const IMAGE = process.env.MAILFLEET_TEST_IMAGE!;
const ARCHIVE = process.env.MAILFLEET_TEST_OCI_ARCHIVE!;
const WORK = process.env.MAILFLEET_TEST_IMAGE_DIR!;
const pkg = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8'));
const chart = YAML.parse(readFileSync(path.join(REPO_ROOT, 'charts/mailfleet/Chart.yaml'), 'utf8'));
const values = YAML.parse(readFileSync(path.join(REPO_ROOT, 'charts/mailfleet/values.yaml'), 'utf8'));
const NODE_VERSION = /^ARG NODE_VERSION=(\S+)$/m.exec(
  readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8'),
)![1]!;

const LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
/** What the relay StatefulSet's securityContext asks of the container runtime. */
const LIKE_A_POD = [
  '--read-only',
  '--read-only-tmpfs=false',
  '--tmpfs',
  '/tmp',
  '--cap-drop',
  'ALL',
  '--security-opt',
  'no-new-privileges',
];

const podman = (args: string[], input?: string): Promise<RunResult> =>
  run('podman', args, { input, timeoutMs: 120_000 });
const runImage = (args: string[], input?: string) => podman(['run', '--rm', '-i', ...LIMITS, ...args], input);

describe('the image', () => {
  it('runs as 65532:65532, keeps the base entrypoint, runs the operator by default, names its version', async () => {
    const r = await podman(['image', 'inspect', IMAGE]);
    expect(r.code).toBe(0);
    const { Config: config } = JSON.parse(r.stdout)[0];
    expect(config.User).toBe('65532:65532');
    expect(config.Entrypoint).toEqual(['docker-entrypoint.sh']);
    expect(config.Cmd).toEqual(['mailfleet-operator']);
    expect(config.Labels['org.opencontainers.image.version']).toBe(pkg.version);
    expect(config.Labels['org.opencontainers.image.base.name']).toMatch(/node/);
    expect(Object.keys(config.Volumes)).toEqual(['/var/spool/mailfleet']);
    expect(config.WorkingDir).toBe('/var/spool/mailfleet');
    // The build's CA argument for npm stays in the build stages.
    expect(config.Env.join('\n')).not.toMatch(/NODE_EXTRA_CA_CERTS/);
  });

  it('is written as an OCI archive whose index names it as the chart does (ctr images import)', async () => {
    expect(IMAGE).toBe(`${values.image.repository}:${chart.appVersion}`);
    const index = JSON.parse((await run('tar', ['-xOf', ARCHIVE, 'index.json'])).stdout);
    expect(index.manifests).toHaveLength(1);
    expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe(IMAGE);
    const digest = index.manifests[0].digest.replace(':', '/');
    const manifest = JSON.parse((await run('tar', ['-xOf', ARCHIVE, `blobs/${digest}`])).stdout);
    const id = (await podman(['image', 'inspect', '--format', '{{.Id}}', IMAGE])).stdout.trim();
    expect(manifest.config.digest).toBe(`sha256:${id}`);
  });

  it('runs the pinned Node from /usr/local/bin on trixie glibc, and options go to node (the base entrypoint)', async () => {
    const version = await runImage([IMAGE, '--version']);
    expect(version.stdout.trim()).toBe(`v${NODE_VERSION}`);
    const where = await runImage([
      IMAGE,
      'node',
      '-p',
      'process.execPath + " " + process.report.getReport().header.glibcVersionRuntime',
    ]);
    expect(where.stdout.trim()).toBe('/usr/local/bin/node 2.41');
  });

  it('runs as uid 65532 and holds no package manager, compiler or dev dependency', async () => {
    const probe = [
      'id -u; id -g',
      'for c in npm npx corepack yarn yarnpkg pnpm gcc cc c++ g++ make python3 tsc; do command -v "$c" || true; done',
      'for p in /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-v* \\',
      '  /app/node_modules/typescript /app/node_modules/jest /app/node_modules/.bin/tsc /app/relay /app/operator \\',
      '  /mnt/host-ca.crt /run/mailfleet-build-ca.crt; do [ -e "$p" ] && echo "$p"; done; true',
    ].join('\n');
    const r = await runImage([IMAGE, 'sh', '-c', probe]);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toEqual(['65532', '65532']);
  });

  it('mailfleet-operator --help prints its usage', async () => {
    const r = await runImage([...LIKE_A_POD, IMAGE, 'mailfleet-operator', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: mailfleet-operator/);
  });

  it('mailfleet-relay check-config passes examples/relay.yaml with its files, and names a missing one', async () => {
    const dir = await fs.mkdtemp(path.join(WORK, 'config-'));
    await fs.chmod(dir, 0o755); // readable by the image's user, as the kubelet's projected files are
    await fs.copyFile(path.join(REPO_ROOT, 'examples/relay.yaml'), path.join(dir, 'relay.yaml'));
    // The files it names, as the operator's Secrets provide them; the hash comes from the image itself.
    const hash = await runImage([IMAGE, 'mailfleet-relay', 'hash-password'], 'a password\n');
    expect(hash.stdout).toMatch(/^\$scrypt\$/);
    const cert = makeCert(makeCa(), { names: ['relay.example.com'] });
    const dkim = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
    const files: Record<string, string> = {
      'tls/tls.crt': cert.certPem,
      'tls/tls.key': cert.keyPem,
      users: `app1:${hash.stdout.trim()}\n`,
      'dkim/alerts.example.com.pem': dkim.export({ type: 'pkcs8', format: 'pem' }).toString(),
      'smarthost/username': 'relay',
      'smarthost/password': 'smarthost password',
      'handoff/password': 'handoff password',
      'admin/token': 'admin token',
    };
    for (const [name, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(dir, name)), { recursive: true });
      await fs.writeFile(path.join(dir, name), text, { mode: 0o644 });
    }
    const check = () =>
      runImage([
        ...LIKE_A_POD,
        '-v',
        `${dir}:/etc/mailfleet:ro`,
        IMAGE,
        'mailfleet-relay',
        'check-config',
        '--config',
        '/etc/mailfleet/relay.yaml',
      ]);
    const ok = await check();
    expect({ code: ok.code, stderr: ok.stderr }).toEqual({ code: 0, stderr: '' });
    await fs.rm(path.join(dir, 'tls/tls.key'));
    const bad = await check();
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/tls\.keyFile: .*\/etc\/mailfleet\/tls\/tls\.key/);
  });
});

/** A process started inside the relay container's network namespace; its stdout is JSON lines. */
interface NetnsProcess {
  child: ChildProcess;
  next(event: string, match?: (m: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

function inNetns(pid: number, cmd: string, args: string[]): NetnsProcess {
  const child = spawn('nsenter', ['-t', String(pid), '-n', '--', cmd, ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const seen: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    try {
      seen.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // not an event line
    }
  });
  return {
    child,
    next: (event, match = () => true) =>
      waitFor(`${event} from ${path.basename(args[1] ?? cmd)}`, () => {
        if (child.exitCode !== null) throw new FatalWaitError(`${cmd} exited (${child.exitCode}): ${stderr}`);
        return seen.find((m) => m.event === event && match(m));
      }),
  };
}

describe('the relay in the image, on a read-only root file system', () => {
  let container = '';
  let pid = 0;
  const helpers: ChildProcess[] = [];
  let logs: ChildProcess | undefined;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    const dir = await fs.mkdtemp(path.join(WORK, 'relay-'));
    await fs.writeFile(path.join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    const started = await podman([
      'run',
      '-d',
      ...LIMITS,
      ...LIKE_A_POD,
      '--network',
      'none',
      '-v',
      `${dir}/resolv.conf:/etc/resolv.conf:ro`,
      IMAGE,
      'mailfleet-relay',
    ]);
    expect(started.stderr).toBe('');
    container = started.stdout.trim();
    logs = spawn('podman', ['logs', '-f', container], { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [logs.stdout!, logs.stderr!])
      readline.createInterface({ input: stream }).on('line', (l) => {
        try {
          lines.push(JSON.parse(l) as Record<string, unknown>);
        } catch {
          lines.push({ text: l });
        }
      });
    pid = Number((await podman(['inspect', '--format', '{{.State.Pid}}', container])).stdout.trim());
    expect(pid).toBeGreaterThan(0);
  });

  afterAll(async () => {
    for (const h of helpers) h.kill('SIGKILL');
    logs?.kill('SIGKILL');
    if (container) await podman(['rm', '-f', '-v', container]);
  });

  const relayLog = (what: string, match: (l: Record<string, unknown>) => boolean) =>
    waitFor(what, async () => {
      const hit = lines.find(match);
      if (hit) return hit;
      const state = (await podman(['inspect', '--format', '{{.State.Status}}', container])).stdout.trim();
      if (state !== 'running')
        throw new FatalWaitError(`the relay container is ${state}: ${JSON.stringify(lines)}`);
      return undefined;
    });

  it('starts on its embedded default config as uid 65532, with the queue on the spool volume', async () => {
    const ready = await relayLog('the relay ready log', (l) => l.event === 'ready');
    expect(ready.spool).toBe('/var/spool/mailfleet/.spool');
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
    expect(/^Uid:\s+(.*)$/m.exec(status)![1]!.split(/\s+/)).toEqual(['65532', '65532', '65532', '65532']);
    expect(/^CapEff:\s+(\S+)$/m.exec(status)![1]).toBe('0000000000000000');
    const write = await podman(['exec', container, 'sh', '-c', 'echo > /app/x']);
    expect(write.stderr).toMatch(/Read-only file system/);
    const mounts = JSON.parse((await podman(['inspect', '--format', '{{json .Mounts}}', container])).stdout);
    expect(mounts.find((m: { Destination: string }) => m.Destination === '/var/spool/mailfleet').Type).toBe(
      'volume',
    );
  });

  it('takes a message over SMTP from swaks and delivers it to the MX the DNS names', async () => {
    const work = await fs.mkdtemp(path.join(WORK, 'mx-'));
    await fs.writeFile(
      path.join(work, 'zone.json'),
      JSON.stringify({ records: [mx('dest.test', 'mx.dest.test'), a('mx.dest.test', '127.0.0.1')] }),
    );
    await fs.writeFile(
      path.join(work, 'mx.json'),
      JSON.stringify({ host: '127.0.0.1', port: 25, name: 'mx.dest.test', saveDir: work }),
    );
    const node = [process.execPath, '--disable-warning=ExperimentalWarning'];
    const dns = inNetns(pid, node[0]!, [
      node[1]!,
      'test/helpers/dns-server.ts',
      path.join(work, 'zone.json'),
      '53',
    ]);
    const downstream = inNetns(pid, node[0]!, [
      node[1]!,
      'test/helpers/smtp-downstream-server.ts',
      path.join(work, 'mx.json'),
    ]);
    helpers.push(dns.child, downstream.child);
    await dns.next('ready');
    await downstream.next('ready');
    await relayLog('the relay ready log', (l) => l.event === 'ready');

    const sent = await run(
      'nsenter',
      [
        '-t',
        String(pid),
        '-n',
        '--',
        'swaks',
        '--timeout',
        '20',
        '--server',
        '127.0.0.1:2525',
        '--from',
        'test@example.com',
        '--to',
        'someone@dest.test',
        '--header',
        'X-Test-Id: image-relay',
      ],
      { timeoutMs: 60_000 },
    );
    expect({
      code: sent.code,
      last: sent.stdout
        .trim()
        .split('\n')
        .filter((l) => /^<-/.test(l))
        .pop(),
    }).toEqual({
      code: 0,
      last: expect.stringMatching(/^<- {2}221 /),
    });
    expect(sent.stdout).toMatch(/^<- {2}250 .*queued/m);
    const delivered = await downstream.next('message', (m) => m.testId === 'image-relay');
    expect({ from: delivered.from, to: delivered.to }).toEqual({
      from: 'test@example.com',
      to: ['someone@dest.test'],
    });
  });
});
