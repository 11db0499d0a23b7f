/**
 * Starts the downstream test SMTP server (smtp-downstream-server.ts) as a child process and talks to it.
 *
 *   const mx = await startDownstream({ saveDir });          // accepts everything
 *   await mx.set({ rcpt: { 'gone@x.test': '550 5.1.1 no such user' }, data: '451 4.3.0 later' });
 *   await mx.waitForMessages(3);  mx.messages  mx.raw(mx.messages[0])
 *   await mx.stop();  const again = await startDownstream({ port: mx.port });   // "comes back"
 *
 * Waiting is event-driven with a bound (it fails instead of hanging); nothing sleeps.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { freePort } from '../cluster/proc.js';

export interface DownstreamRules {
  /** "accept" (default), "drop", "stall", or a greeting reply such as "421 4.3.2 busy". */
  connect?: string;
  mail?: string;
  rcpt?: Record<string, string>;
  rcptDefault?: string;
  /** A reply for the message, "drop" or "stall". */
  data?: string;
  /** Accept messages only after this delay (a slow server). */
  dataDelayMs?: number;
}

export interface DownstreamOptions {
  /** Address to listen on (default 127.0.0.1; other 127.x addresses give MX hosts their own IP). */
  host?: string;
  port?: number;
  name?: string;
  /** Keep raw messages (needed for raw()). Default: a temporary directory. */
  saveDir?: string;
  tls?: { key: string; cert: string };
  secure?: boolean;
  auth?: { user: string; pass: string };
  rules?: DownstreamRules;
}

export interface ReceivedMessage {
  n: number;
  from: string;
  to: string[];
  size: number;
  ehlo: string;
  secure: boolean;
  user?: string;
  testId?: string;
  messageId?: string;
  file: string;
  /** The connection it came over. */
  session: string;
}

export interface Downstream {
  port: number;
  readonly messages: ReceivedMessage[];
  /** AUTH attempts seen: user names and whether they passed. */
  readonly auths: { user: string; ok: boolean }[];
  readonly connects: number;
  /** Most messages being received (body to reply) at once, over all connections. */
  readonly peakTransactions: number;
  /** New rules for new commands; dropConnections also closes open (e.g. pooled) connections. */
  set(rules: DownstreamRules, opts?: { dropConnections?: boolean }): Promise<void>;
  waitForMessages(n: number, timeoutMs?: number): Promise<ReceivedMessage[]>;
  raw(m: ReceivedMessage): Promise<Buffer>;
  /** Stops the server and removes its files. */
  stop(): Promise<void>;
  /** Kills the process (default SIGKILL), keeping its files. */
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const SERVER_SCRIPT = path.join(__dirname, 'smtp-downstream-server.ts');

export async function startDownstream(opts: DownstreamOptions = {}): Promise<Downstream> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mailfleet-downstream-'));
  const saveDir = opts.saveDir ?? dir;
  const optionsFile = path.join(dir, 'options.json');
  const { rules, ...serverOpts } = opts;
  await fs.writeFile(optionsFile, JSON.stringify({ ...serverOpts, saveDir }));
  const child: ChildProcess = spawn(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', SERVER_SCRIPT, optionsFile],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  const messages: ReceivedMessage[] = [];
  const auths: { user: string; ok: boolean }[] = [];
  let connects = 0;
  let peakTransactions = 0;
  let stderr = '';
  let exited = false;
  const listeners = new Set<() => void>();
  const changed = () => listeners.forEach((l) => l());
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  child.once('exit', () => {
    exited = true;
    changed();
  });
  const acks = new Map<number, () => void>();
  let port = 0;
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (msg.event === 'ready') port = Number(msg.port);
    if (msg.event === 'ok') acks.get(Number(msg.seq))?.();
    if (msg.event === 'connect') connects++;
    if (msg.event === 'data') peakTransactions = Math.max(peakTransactions, Number(msg.open));
    if (msg.event === 'auth') auths.push({ user: String(msg.user), ok: Boolean(msg.ok) });
    if (msg.event === 'message') messages.push(msg as unknown as ReceivedMessage);
    changed();
  });

  /** Resolves when `cond` holds after some output (or now); rejects after `timeoutMs` or on exit. */
  const until = (cond: () => boolean, what: string, timeoutMs = 20_000) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (cond()) finish();
        else if (exited) finish(new Error(`downstream exited while waiting for ${what}: ${stderr}`));
      };
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${what}`)), timeoutMs);
      const finish = (err?: Error) => {
        clearTimeout(timer);
        listeners.delete(check);
        if (err) reject(err);
        else resolve();
      };
      listeners.add(check);
      check();
    });

  await until(() => port > 0, 'the downstream server to listen', 10_000);
  let seq = 0;
  const handle: Downstream = {
    port,
    messages,
    auths,
    get connects() {
      return connects;
    },
    get peakTransactions() {
      return peakTransactions;
    },
    async set(r, setOpts = {}) {
      const n = ++seq;
      const acked = new Promise<void>((resolve) => acks.set(n, resolve));
      child.stdin!.write(JSON.stringify({ seq: n, rules: r, ...setOpts }) + '\n');
      await acked;
      acks.delete(n);
    },
    async waitForMessages(n, timeoutMs) {
      await until(() => messages.length >= n, `${n} messages (have ${messages.length})`, timeoutMs);
      return messages.slice(0, n);
    },
    raw: (m) => fs.readFile(m.file),
    async stop() {
      await handle.kill('SIGTERM');
      await fs.rm(dir, { recursive: true, force: true });
    },
    async kill(signal: NodeJS.Signals = 'SIGKILL') {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await gone;
    },
  };
  if (rules) await handle.set(rules);
  return handle;
}

/**
 * Postfix's smtp-sink (/usr/sbin/smtp-sink) as a downstream: accepts everything and dumps each
 * message into `dir` (one file per transaction, with X-Mail-Args/X-Rcpt-Args/X-Helo-Args headers).
 */
export interface SmtpSink {
  port: number;
  dir: string;
  /** Dumped transactions so far. */
  files(): Promise<string[]>;
  waitForFiles(n: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

export const SMTP_SINK = '/usr/sbin/smtp-sink';

export async function startSmtpSink(opts: { host?: string } = {}): Promise<SmtpSink> {
  const host = opts.host ?? '127.0.0.1';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mailfleet-sink-'));
  await fs.chmod(dir, 0o777); // smtp-sink drops privileges to -u USER when started as root
  const port = await freePort(host);
  const args = [
    ...(process.getuid?.() === 0 ? ['-u', 'nobody'] : []),
    '-d',
    path.join(dir, '%Y%m%d%H%M%S.'),
    `${host}:${port}`,
    '100',
  ];
  const child = spawn(SMTP_SINK, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  child.once('exit', () => (exited = true));
  // ready once it accepts a connection (bounded)
  for (let i = 0; ; i++) {
    if (exited) throw new Error(`smtp-sink exited: ${stderr}`);
    if (await canConnect(host, port)) break;
    if (i > 200) throw new Error(`smtp-sink did not listen on ${host}:${port}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  const files = async () => (await fs.readdir(dir)).sort().map((f) => path.join(dir, f));
  return {
    port,
    dir,
    files,
    async waitForFiles(n, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const have = await files();
        if (have.length >= n) return have;
        if (Date.now() > deadline) throw new Error(`smtp-sink has ${have.length} of ${n} messages`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export { freePort };
