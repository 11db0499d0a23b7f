/**
 * Postfix's test programs as the benchmarks' load and downstream:
 *
 *   smtp-sink    the downstream every relay delivers to; discards mail and counts it (-c prints running
 *                counters "sess=N quit=N mesg=N" on stdout, read here as they change)
 *   smtp-source  the load generator: S parallel sessions, M messages of L payload bytes, a new
 *                connection per message or (-d) one connection per session for all its messages
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freePort, onExitCleanup, waitFor, greets } from './proc.js';

export const SMTP_SINK = '/usr/sbin/smtp-sink';
export const SMTP_SOURCE = '/usr/sbin/smtp-source';

export interface Sink {
  port: number;
  /** Messages received so far ("." answered). */
  readonly messages: number;
  waitForMessages(n: number, timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

const asRoot = () => process.getuid?.() === 0;

export async function startSink(host = '127.0.0.1'): Promise<Sink> {
  const port = await freePort(host);
  const child: ChildProcess = spawn(
    SMTP_SINK,
    [...(asRoot() ? ['-u', 'nobody'] : []), '-c', `${host}:${port}`, '1024'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const unhook = onExitCleanup(() => child.kill('SIGKILL'));
  let messages = 0;
  let stderr = '';
  let exited = false;
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => {
    pending += d.toString('latin1');
    const end = pending.lastIndexOf('mesg=');
    if (end < 0) return;
    const m = /mesg=(\d+)/.exec(pending.slice(end));
    if (m) messages = Math.max(messages, Number(m[1]));
    pending = pending.slice(end);
    if (pending.length > 256) pending = pending.slice(-64);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const gone = new Promise<void>((r) =>
    child.once('exit', () => {
      exited = true;
      r();
    }),
  );
  await waitFor(
    `smtp-sink on ${host}:${port}`,
    async () => {
      if (exited) throw new Error(`smtp-sink exited: ${stderr}`);
      return greets(host, port, 500);
    },
    10_000,
  );
  // The readiness probe above was one session without a message; counters only count messages.
  return {
    port,
    get messages() {
      return messages;
    },
    async waitForMessages(n, timeoutMs) {
      await waitFor(`${n} messages at the sink (have ${messages})`, () => messages >= n, timeoutMs, 10);
    },
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await gone;
        clearTimeout(t);
      }
      unhook();
    },
  };
}

export interface SourceOptions {
  host: string;
  port: number;
  sessions: number;
  messages: number;
  /** Payload bytes per message (headers not included). */
  bytes: number;
  /** true: one connection per session for all its messages (-d); false: a new connection per message. */
  reuse: boolean;
  from: string;
  to: string;
  helo?: string;
  timeoutMs: number;
}

export interface SourceResult {
  ms: number;
  code: number;
  stderr: string;
  args: string[];
}

export function sourceArgs(o: SourceOptions): string[] {
  return [
    '-s',
    String(o.sessions),
    '-m',
    String(o.messages),
    '-l',
    String(o.bytes),
    ...(o.reuse ? ['-d'] : []),
    '-M',
    o.helo ?? 'source.bench.test',
    '-f',
    o.from,
    '-t',
    o.to,
    `${o.host}:${o.port}`,
  ];
}

/** Runs smtp-source to its end (killed after timeoutMs); ms is its wall time. */
export function runSource(o: SourceOptions): Promise<SourceResult> {
  const args = sourceArgs(o);
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(SMTP_SOURCE, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const unhook = onExitCleanup(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      unhook();
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      unhook();
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({ ms, code: code ?? (signal ? 128 : 1), stderr: stderr.trim(), args });
    });
  });
}
