/**
 * Process and polling primitives for the control-plane harness: run a command to completion with a time
 * bound, poll a condition with a time bound, find a free loopback port, probe an HTTP(S) endpoint, and
 * check whether a process we started is still alive. Nothing here sleeps in place of a condition; every
 * loop ends at its deadline.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the command and reject after this long (default 120 s). */
  timeoutMs?: number;
}

/** Runs a command to completion and returns its exit code and output; rejects only if it cannot run or times out. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: 'pipe' });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no exit after ${timeoutMs} ms (killed)`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.on('error', () => undefined); // a command that exits without reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Thrown from a waitFor condition to stop waiting at once (the thing waited for can no longer happen). */
export class FatalWaitError extends Error {}

export interface WaitOptions {
  /** Give up after this long (default 60 s). */
  timeoutMs?: number;
  /** Time between attempts (default 250 ms). */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns something other than undefined/false/null, and returns that. Errors
 * thrown by `check` count as "not yet" (the last one is reported on timeout), except FatalWaitError.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: WaitOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const intervalMs = opts.intervalMs ?? 250;
  const deadline = Date.now() + timeoutMs;
  let last: string;
  for (let attempt = 1; ; attempt++) {
    try {
      const v = await check();
      if (v !== undefined && v !== null && v !== false) return v;
      last = '';
    } catch (e) {
      if (e instanceof FatalWaitError) throw e;
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms (${attempt} attempts) waiting for ${what}${last ? `; last error: ${last}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
}

/** A TCP port on `host` (default 127.0.0.1) that was free a moment ago (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface TlsClient {
  ca?: string;
  cert?: string;
  key?: string;
  /** Accept any server certificate (the controller manager and scheduler serve self-signed ones). */
  insecure?: boolean;
}

/** GET with a 5 s bound; resolves to the status and body, rejects on connection errors. */
export function httpGet(url: string, tls: TlsClient = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onRes = (res: http.IncomingMessage): void => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    };
    const req = url.startsWith('https:')
      ? https.get(
          url,
          { ca: tls.ca, cert: tls.cert, key: tls.key, rejectUnauthorized: !tls.insecure, agent: false },
          onRes,
        )
      : http.get(url, { agent: false }, onRes);
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url}: no answer in 5 s`)));
    req.on('error', reject);
  });
}

/** True if `pid` is a live (not zombie) process whose command line mentions `marker`. */
export function isOurProcess(pid: number, marker: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The last `lines` lines of a file (for error messages), or '' if it cannot be read. */
export function tail(file: string, lines = 25): string {
  try {
    const text = fs.readFileSync(file, 'utf8');
    return text
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '';
  }
}
