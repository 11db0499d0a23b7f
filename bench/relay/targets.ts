/**
 * The relays under test, each started fresh in its own directory, listening on a loopback port and
 * relaying everything from 127.0.0.0/8 to the sink — and stopped again, whatever happened.
 *
 *   mailfleet  this repository's relay as users run it (`node <build>/relay/cli.js --config FILE`):
 *              relay listener, normal fsync mode, info logs to a file, smarthost = the sink (tls none)
 *   postfix    Debian's Postfix 3.7 as a private instance (own config_directory, queue_directory,
 *              data_directory under the run's directory; smtpd on an unprivileged loopback port;
 *              relayhost = the sink); queue on disk with Postfix's default fsync behaviour
 *   haraka     Haraka 3.x from npm (installed into a cache, never into the project), 2 nodes (cluster),
 *              relay ACL for 127.0.0.0/8, its durable outbound queue, a get_mx plugin naming the sink
 *   bare-*     smtp-server alone, discarding every message (no spool, no delivery): the library's
 *              defaults, and with mailfleet's adapter (relay/smtp/connection.ts)
 *   direct     no relay: smtp-source talks to the sink itself (the ceiling of the load tools)
 *
 * Settings that differ from each program's defaults, and why (the same for all where it applies):
 * message size limit 64 MiB (the 50 MB test), per-client rate limits off (all load comes from one
 * address), TLS off on both sides, log level info into a file.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { SENDER_DOMAIN } from '../lib/dns.js';
import {
  freePort,
  greets,
  onExitCleanup,
  runCommand,
  sleep,
  startLogged,
  tailFile,
  waitFor,
  type Started,
} from '../lib/proc.js';

export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

export interface StartContext {
  /** A fresh directory for this instance (config, queue, logs). */
  dir: string;
  sinkPort: number;
  /** "127.0.0.1:port" of the DNS server (recipient domain checks). */
  dns: string;
}

export interface RunningRelay {
  port: number;
  /** Root of the relay's process tree (CPU and RSS are read from it). */
  rootPid: number;
  log: string;
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  /** Accepts and delivers (false: accepts and discards; there is nothing to wait for at the sink). */
  delivers: boolean;
  describe(): string;
  version(): string;
  start(ctx: StartContext): Promise<RunningRelay>;
}

async function waitGreeting(name: string, port: number, started: Started | undefined, log: string) {
  await waitFor(
    `${name} to greet on 127.0.0.1:${port}`,
    async () => {
      if (started && started.child.exitCode !== null)
        throw new Error(`${name} exited during start:\n${tailFile(log)}`);
      return greets('127.0.0.1', port, 1000);
    },
    60_000,
    100,
  );
}

// ── mailfleet ────────────────────────────────────────────────────────────────────────────────────────

export interface MailfleetOptions {
  /** The relay's compiled CLI (dist/relay/cli.js or the bench build). */
  cli: string;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Config overrides merged over the bench config (top-level keys). */
  config?: Record<string, unknown>;
  label?: string;
  /** What to print as the version (e.g. "mailfleet 0.1.0 @ abc1234"). */
  version: string;
  /**
   * PROTOTYPE (bench/relay/prototype-relay.ts, given as `prototypeScript`): run this many relay
   * processes sharing the listener, each with its own spool.
   */
  workers?: number;
  prototypeScript?: string;
}

/** `over` merged into `base`: objects recursively, everything else (arrays included) replaced. */
export function deepMerge(
  base: Record<string, unknown>,
  over: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export function mailfleetConfig(ctx: StartContext, port: number, extra: Record<string, unknown> = {}) {
  return deepMerge(mailfleetBaseConfig(ctx, port), extra);
}

function mailfleetBaseConfig(ctx: StartContext, port: number): Record<string, unknown> {
  return {
    hostname: 'mailfleet.bench.test',
    listeners: { relay: { address: '127.0.0.1', port, allowedNetworks: ['127.0.0.0/8'] } },
    domains: [{ name: SENDER_DOMAIN, allowedUsers: ['*'] }],
    limits: {
      maxMessageBytes: MAX_MESSAGE_BYTES,
      messagesPerMinutePerClient: 0,
      messagesPerMinutePerUser: 0,
      maxConnections: 2000,
    },
    dns: { servers: [ctx.dns] },
    spool: { dir: path.join(ctx.dir, 'spool') },
    delivery: {
      route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: ctx.sinkPort, tls: 'none' } },
      heloName: 'mailfleet.bench.test',
    },
    admin: { address: '127.0.0.1', port: 0 },
    log: { level: 'info' },
  };
}

export function mailfleet(opts: MailfleetOptions): Target {
  return {
    name: opts.label ?? 'mailfleet',
    delivers: true,
    describe: () =>
      `node ${path.relative(process.cwd(), opts.cli)} --config relay.yaml (relay listener, smarthost = sink, tls none)`,
    version: () => `${opts.version} (node ${process.versions.node})`,
    async start(ctx) {
      const port = await freePort();
      const workers = opts.workers ?? 1;
      const configs = Array.from({ length: workers }, (_, i) => {
        const file = path.join(ctx.dir, workers > 1 ? `relay-${i}.yaml` : 'relay.yaml');
        const perWorker = workers > 1 ? { spool: { dir: path.join(ctx.dir, `spool-${i}`) } } : {};
        fs.writeFileSync(file, YAML.stringify(deepMerge(mailfleetConfig(ctx, port, opts.config), perWorker)));
        return file;
      });
      const log = path.join(ctx.dir, 'relay.log');
      const args =
        workers > 1
          ? [...(opts.nodeArgs ?? []), opts.prototypeScript!, opts.cli, ...configs]
          : [...(opts.nodeArgs ?? []), opts.cli, '--config', configs[0]!];
      const p = startLogged('mailfleet', process.execPath, args, log, {
        cwd: ctx.dir,
        env: { ...process.env, ...opts.env },
      });
      await waitGreeting('mailfleet', port, p, log);
      return { port, rootPid: p.pid, log, stop: () => p.stop(30_000) };
    },
  };
}

// ── Postfix ──────────────────────────────────────────────────────────────────────────────────────────

function postfixMainCf(dir: string, sinkPort: number): string {
  return `# mailfleet bench: a private Postfix instance relaying loopback clients to the sink.
compatibility_level = 3.6
config_directory = ${dir}/etc
queue_directory = ${dir}/spool
data_directory = ${dir}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery disabled
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:${sinkPort}
smtp_tls_security_level = none
smtpd_tls_security_level = none
message_size_limit = ${MAX_MESSAGE_BYTES}
mailbox_size_limit = 0
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
biff = no
`;
}

/** Debian's master.cf services, without chroot (the instance lives in a temp directory). */
function postfixMasterCf(port: number): string {
  const rows = [
    `127.0.0.1:${port} inet n - n - - smtpd`,
    'pickup unix n - n 60 1 pickup',
    'cleanup unix n - n - 0 cleanup',
    'qmgr unix n - n 300 1 qmgr',
    'tlsmgr unix - - n 1000? 1 tlsmgr',
    'rewrite unix - - n - - trivial-rewrite',
    'bounce unix - - n - 0 bounce',
    'defer unix - - n - 0 bounce',
    'trace unix - - n - 0 bounce',
    'verify unix - - n - 1 verify',
    'flush unix n - n 1000? 0 flush',
    'proxymap unix - - n - - proxymap',
    'proxywrite unix - - n - 1 proxymap',
    'smtp unix - - n - - smtp',
    'relay unix - - n - - smtp',
    'showq unix n - n - - showq',
    'error unix - - n - - error',
    'retry unix - - n - - error',
    'discard unix - - n - - discard',
    'anvil unix - - n - 1 anvil',
    'scache unix - - n - 1 scache',
    'postlog unix-dgram n - n - 1 postlogd',
  ];
  return rows.join('\n') + '\n';
}

/** Postfix logs problems of its commands to syslog only; a pseudo-terminal makes it print them. */
function postfixCommand(dir: string, verb: string) {
  return runCommand('script', ['-qec', `postfix -c ${dir}/etc ${verb}`, '/dev/null'], { timeoutMs: 60_000 });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function postfix(): Target {
  return {
    name: 'postfix',
    delivers: true,
    describe: () => 'postfix -c DIR start (private instance; smtpd on loopback; relayhost = sink)',
    version: () =>
      `Postfix ${execFileSync('postconf', ['-dh', 'mail_version'], { encoding: 'utf8' }).trim()}`,
    async start(ctx) {
      if (process.getuid?.() !== 0) throw new Error('postfix: the private instance needs root (mail_owner)');
      const dir = ctx.dir;
      const port = await freePort();
      // Postfix's daemons run as mail_owner and must reach data/ and spool/ (mkdtemp makes 0700 dirs).
      fs.chmodSync(path.dirname(dir), 0o755);
      fs.chmodSync(dir, 0o755);
      for (const sub of ['etc', 'spool', 'data']) fs.mkdirSync(path.join(dir, sub), { recursive: true });
      execFileSync('chown', ['postfix', path.join(dir, 'data')]);
      fs.writeFileSync(path.join(dir, 'etc/main.cf'), postfixMainCf(dir, ctx.sinkPort));
      fs.writeFileSync(path.join(dir, 'etc/master.cf'), postfixMasterCf(port));
      const log = path.join(dir, 'maillog');
      const unhook = onExitCleanup(() => {
        spawnSync('postfix', ['-c', `${dir}/etc`, 'abort'], { stdio: 'ignore', timeout: 10_000 });
      });
      const r = await postfixCommand(dir, 'start');
      if (r.code !== 0) throw new Error(`postfix start failed: ${r.stdout}${r.stderr}\n${tailFile(log)}`);
      const pidFile = path.join(dir, 'spool/pid/master.pid');
      await waitFor('postfix master pid file', () => fs.existsSync(pidFile), 10_000);
      const master = Number(fs.readFileSync(pidFile, 'utf8').trim());
      await waitGreeting('postfix', port, undefined, log);
      return {
        port,
        rootPid: master,
        log,
        async stop() {
          await postfixCommand(dir, 'stop');
          try {
            await waitFor('postfix master to exit', () => !pidAlive(master), 20_000);
          } catch {
            await postfixCommand(dir, 'abort');
            await sleep(500);
          }
          unhook();
        },
      };
    },
  };
}

// ── Haraka ───────────────────────────────────────────────────────────────────────────────────────────

export const HARAKA_VERSION = '3.3.4';
export const HARAKA_RELAY_PLUGIN_VERSION = '1.0.2';

/** Installs the pinned Haraka into `cacheDir` (its own package.json, never the project's). */
export async function ensureHaraka(cacheDir: string): Promise<string> {
  const bin = path.join(cacheDir, 'node_modules/Haraka/bin/haraka');
  const installed = path.join(cacheDir, 'node_modules/Haraka/package.json');
  const pkg = {
    name: 'mailfleet-bench-haraka',
    private: true,
    description: 'Haraka for mailfleet benchmarks (bench/relay); not a project dependency',
    dependencies: { Haraka: HARAKA_VERSION, 'haraka-plugin-relay': HARAKA_RELAY_PLUGIN_VERSION },
  };
  const want = JSON.stringify(pkg, null, 2) + '\n';
  const pkgFile = path.join(cacheDir, 'package.json');
  const current = fs.existsSync(pkgFile) ? fs.readFileSync(pkgFile, 'utf8') : '';
  if (
    current === want &&
    fs.existsSync(installed) &&
    JSON.parse(fs.readFileSync(installed, 'utf8')).version === HARAKA_VERSION
  )
    return bin;
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.writeFileSync(pkgFile, want);
  const r = await runCommand(
    'npm',
    ['install', '--prefix', cacheDir, '--omit=optional', '--no-audit', '--no-fund', '--loglevel=error'],
    { timeoutMs: 600_000 },
  );
  if (r.code !== 0) throw new Error(`npm install of Haraka into ${cacheDir} failed:\n${r.stderr}`);
  return bin;
}

const HARAKA_CONNECTION_INI = `[main]
[haproxy]
hosts[] =
[headers]
max_lines=1000
max_received=100
[max]
bytes=${MAX_MESSAGE_BYTES}
mime_parts=1000
line_length=512
data_line_length=992
[message]
helo=Haraka is at your service.
close=closing connection. Have a jolly good day.
[uuid]
banner_chars=6
deny_chars=0
`;

const HARAKA_MX_PLUGIN = `// mailfleet bench: all outbound mail goes to the sink (BENCH_SINK_PORT), like a smarthost.
exports.register = function () {
  this.register_hook('get_mx', 'get_mx');
};
exports.get_mx = function (next, hmail, domain) {
  next(OK, { exchange: '127.0.0.1', port: Number(process.env.BENCH_SINK_PORT), priority: 0 });
};
`;

export function haraka(opts: { cacheDir: string; nodes?: number }): Target {
  let bin = '';
  const nodes = opts.nodes ?? 2;
  return {
    name: 'haraka',
    delivers: true,
    describe: () =>
      `haraka -c DIR (nodes=${nodes}, relay ACL 127.0.0.0/8, outbound queue, get_mx plugin → sink, outbound TLS off)`,
    version: () => {
      const p = path.join(opts.cacheDir, 'node_modules/Haraka/package.json');
      const v = fs.existsSync(p) ? String(JSON.parse(fs.readFileSync(p, 'utf8')).version) : HARAKA_VERSION;
      return `Haraka ${v} (node ${process.versions.node})`;
    },
    async start(ctx) {
      bin ||= await ensureHaraka(opts.cacheDir);
      const dir = path.join(ctx.dir, 'haraka');
      const init = await runCommand(process.execPath, [bin, '-i', dir], { timeoutMs: 60_000 });
      if (init.code !== 0) throw new Error(`haraka -i failed: ${init.stderr}`);
      const port = await freePort();
      const cfg = (name: string, text: string) => fs.writeFileSync(path.join(dir, 'config', name), text);
      cfg('smtp.ini', `listen=127.0.0.1:${port}\nnodes=${nodes}\n`);
      cfg('plugins', 'relay\nbench_mx\n');
      cfg('relay.ini', '[relay]\nacl=true\nforce_routing=false\n');
      cfg('relay_acl_allow', '127.0.0.0/8\n');
      cfg('outbound.ini', 'local_mx_ok=true\nenable_tls=false\n');
      cfg('log.ini', '[main]\nlevel=info\ntimestamps=true\n');
      cfg('connection.ini', HARAKA_CONNECTION_INI);
      cfg('me', 'haraka.bench.test\n');
      fs.mkdirSync(path.join(dir, 'plugins'), { recursive: true });
      fs.writeFileSync(path.join(dir, 'plugins/bench_mx.js'), HARAKA_MX_PLUGIN);
      fs.mkdirSync(path.join(dir, 'queue'), { recursive: true });
      const log = path.join(ctx.dir, 'haraka.log');
      const p = startLogged('haraka', process.execPath, [bin, '-c', dir], log, {
        env: { ...process.env, BENCH_SINK_PORT: String(ctx.sinkPort) },
        group: true,
      });
      await waitGreeting('haraka', port, p, log);
      // Every worker listens once it has loaded its plugins; the first greeting may come from one.
      await waitFor(
        `${nodes} haraka workers`,
        () => (fs.readFileSync(log, 'utf8').match(/worker \d+ listening/g) ?? []).length >= nodes,
        60_000,
        100,
      );
      return { port, rootPid: p.pid, log, stop: () => p.stop(30_000) };
    },
  };
}

// ── references ───────────────────────────────────────────────────────────────────────────────────────

/** smtp-server alone, discarding mail: `library` defaults, or mailfleet's `adapter` (RelayConnection). */
export function bareSmtpServer(opts: { script: string; variant: 'library' | 'adapter' }): Target {
  return {
    name: opts.variant === 'library' ? 'smtp-server (library defaults)' : 'smtp-server + mailfleet adapter',
    delivers: false,
    describe: () => `node ${path.relative(process.cwd(), opts.script)} ${opts.variant} PORT`,
    version: () => {
      const pkg = path.join(process.cwd(), 'node_modules/smtp-server/package.json');
      const v = fs.existsSync(pkg) ? String(JSON.parse(fs.readFileSync(pkg, 'utf8')).version) : '?';
      return `smtp-server ${v}`;
    },
    async start(ctx) {
      const port = await freePort();
      const log = path.join(ctx.dir, 'bare.log');
      const p = startLogged('smtp-server', process.execPath, [opts.script, opts.variant, String(port)], log);
      await waitGreeting('smtp-server', port, p, log);
      return { port, rootPid: p.pid, log, stop: () => p.stop(5000) };
    },
  };
}

/** No relay: the load goes to the sink itself. */
export function direct(): Target {
  return {
    name: 'smtp-source → smtp-sink',
    delivers: true,
    describe: () => 'no relay',
    version: () => 'Postfix test tools',
    start(ctx) {
      return Promise.resolve({ port: ctx.sinkPort, rootPid: 0, log: '', stop: () => Promise.resolve() });
    },
  };
}
