/**
 * Runs the relay as a real child process — `node dist/relay/cli.js --config <dir>/relay.yaml` — and
 * waits until it is ready. dist/ is built once per run by the integration project's globalSetup
 * (test/integration/global-setup.cjs); nothing here builds.
 *
 *   const relay = await startRelay({ config: relayConfig({ domains: [...] }) });
 *   relay.ports.relay / .submission / .smtps / .admin   (listeners use port 0: bound ports come from the
 *                                                        relay's "ready" log line)
 *   await relay.waitForLog((l) => l.msg === 'message queued')
 *   await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })
 *   await relay.stop()          SIGTERM, resolves with the exit code/signal
 *   await relay.kill()          SIGKILL
 *
 * Every relay started here is killed when the test process exits, whatever happened.
 * Logs (JSON lines) are kept in relay.logs; relay.stderr has anything else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import YAML from 'yaml';
import { hashPassword } from '../../relay/auth/passwords.js';

export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const RELAY_CLI = path.join(REPO_ROOT, 'dist', 'relay', 'cli.js');

export type LogLine = Record<string, unknown> & { msg?: string; event?: string; level?: string };

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RelayProcess {
  /** Working directory: config, users file, certificates and spool live here. */
  dir: string;
  configFile: string;
  spoolDir: string;
  pid: number;
  ports: { relay?: number; submission?: number; smtps?: number; admin: number };
  logs: LogLine[];
  stderr(): string;
  /** The first log line (already seen or still to come) that matches. */
  waitForLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** The next matching log line written after this call (e.g. the next "config_reloaded"). */
  nextLog(match: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  /** Rewrites the config file (the relay reloads it on its own). */
  writeConfig(config: Record<string, unknown>): Promise<void>;
  admin(pathname: string, init?: RequestInit): Promise<{ status: number; body: string }>;
  /** The value of one metric sample, undefined when absent. */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  stop(signal?: NodeJS.Signals): Promise<Exit>;
  kill(): Promise<Exit>;
  exited: Promise<Exit>;
}

const running = new Set<ChildProcess>();
/** Relays started under a wrapper: killing the wrapper would not end them. */
const wrappedPids = new Set<number>();
process.once('exit', () => {
  for (const child of running) if (child.pid) child.kill('SIGKILL');
  for (const pid of wrappedPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

/**
 * Outgoing mail parked: a smarthost that refuses connections (nothing listens on 127.0.0.1:1), so every
 * accepted message stays in the spool, deferred. Intake tests use it to read back what was accepted.
 */
export const PARKED_DELIVERY = {
  route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: 1, tls: 'none' } },
};

/**
 * A config with every section a test usually needs: loopback, port 0 everywhere, spool in ./spool,
 * delivery parked (PARKED_DELIVERY), a DNS timeout a loaded machine does not reach. Listeners and
 * domains come from `overrides`.
 */
export function relayConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    hostname: 'relay.test',
    listeners: { relay: { address: '127.0.0.1', port: 0, allowedNetworks: ['127.0.0.0/8'] } },
    domains: [{ name: 'example.com', allowedUsers: ['*'] }],
    spool: { dir: 'spool' },
    delivery: PARKED_DELIVERY,
    admin: { address: '127.0.0.1', port: 0 },
    dns: { timeoutMs: 2000, tries: 1 },
    ...overrides,
  };
}

/** Writes a users file with cheap scrypt hashes (ln=10: tests only). */
export async function writeUsersFile(file: string, users: Record<string, string>): Promise<void> {
  const lines = await Promise.all(
    Object.entries(users).map(async ([u, p]) => `${u}:${await hashPassword(p, { ln: 10, r: 8, p: 1 })}\n`),
  );
  await fs.writeFile(file, lines.join(''));
}

export async function makeTempDir(prefix = 'mailfleet-relay-'): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

export interface StartOptions {
  config: Record<string, unknown>;
  /** Working directory (default: a new temporary directory). Relative config paths resolve here. */
  dir?: string;
  /** Extra CLI arguments, e.g. ['--shutdown-grace', '5']. */
  args?: string[];
  /** Config/file poll interval (default 100 ms, so reload tests are quick). */
  watchIntervalMs?: number;
  readyTimeoutMs?: number;
  /**
   * A command the relay runs under, e.g. ['strace', '-f', '-o', file]: the relay is its last argument.
   * Signals then go to the relay itself (its pid comes from its "ready" line), not to the wrapper.
   */
  wrap?: string[];
  /** Extra environment for the relay process. */
  env?: Record<string, string>;
}

export async function startRelay(opts: StartOptions): Promise<RelayProcess> {
  const dir = opts.dir ?? (await makeTempDir());
  const configFile = path.join(dir, 'relay.yaml');
  await fs.writeFile(configFile, YAML.stringify(opts.config));
  const relayArgs = [
    RELAY_CLI,
    '--config',
    configFile,
    '--watch-interval-ms',
    String(opts.watchIntervalMs ?? 100),
    ...(opts.args ?? []),
  ];
  const [command, ...args] = [...(opts.wrap ?? []), process.execPath, ...relayArgs];
  const child = spawn(command!, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  running.add(child);
  const logs: LogLine[] = [];
  let stderr = '';
  const watchers = new Set<{ match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      parsed = { msg: line, level: 'raw' };
    }
    logs.push(parsed);
    for (const w of [...watchers]) {
      if (w.match(parsed)) {
        watchers.delete(w);
        w.resolve(parsed);
      }
    }
  });
  const exited = new Promise<Exit>((resolve) =>
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    }),
  );
  const describe = () => `relay logs:\n${logs.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`;
  const waitForLog = (match: (l: LogLine) => boolean, timeoutMs = 10_000, from = 0) => {
    const seen = logs.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const w = { match, resolve };
      watchers.add(w);
      const timer = setTimeout(() => {
        watchers.delete(w);
        reject(new Error(`timed out waiting for a relay log line\n${describe()}`));
      }, timeoutMs);
      void exited.then(() => {
        clearTimeout(timer);
        if (watchers.delete(w)) reject(new Error(`relay exited while waiting for a log line\n${describe()}`));
      });
      const done = w.resolve;
      w.resolve = (l) => {
        clearTimeout(timer);
        done(l);
      };
    });
  };
  const ready = await waitForLog((l) => l.event === 'ready', opts.readyTimeoutMs ?? 15_000);
  const listeners = ready.listeners as Record<string, { port: number }>;
  const adminPort = (ready.admin as { port: number }).port;
  const admin = async (pathname: string, init?: RequestInit) => {
    const res = await fetch(`http://127.0.0.1:${adminPort}${pathname}`, init);
    return { status: res.status, body: await res.text() };
  };
  // Under a wrapper, the relay is the wrapper's child: its pid is in every log line.
  const relayPid = opts.wrap ? (ready.pid as number) : child.pid!;
  if (opts.wrap) {
    wrappedPids.add(relayPid);
    void exited.then(() => wrappedPids.delete(relayPid));
  }
  const signal = async (sig: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(relayPid, sig);
      } catch {
        child.kill(sig);
      }
    }
    return exited;
  };
  return {
    dir,
    configFile,
    spoolDir: ready.spool as string,
    pid: relayPid,
    ports: {
      relay: listeners.relay?.port,
      submission: listeners.submission?.port,
      smtps: listeners.smtps?.port,
      admin: adminPort,
    },
    logs,
    stderr: () => stderr,
    waitForLog: (match, timeoutMs) => waitForLog(match, timeoutMs),
    nextLog: (match, timeoutMs) => waitForLog(match, timeoutMs, logs.length),
    writeConfig: async (config) => {
      const tmp = `${configFile}.tmp`;
      await fs.writeFile(tmp, YAML.stringify(config));
      await fs.rename(tmp, configFile);
    },
    admin,
    metric: async (name, labels = {}) => metricValue((await admin('/metrics')).body, name, labels),
    stop: (sig = 'SIGTERM') => signal(sig),
    kill: () => signal('SIGKILL'),
    exited,
  };
}

/** Reads one sample from Prometheus text format. */
export function metricValue(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries(
      [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1], x[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}
