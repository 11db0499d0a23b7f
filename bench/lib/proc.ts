/**
 * Process plumbing for the benchmarks: start a program with its output in a log file, stop it (TERM,
 * then KILL after a bound), find free loopback ports, wait for an SMTP greeting, run a command to its end
 * with a time bound. Every wait here has a deadline; nothing loops forever.
 *
 * Everything a benchmark starts is registered and killed when the benchmark process exits (killAll on
 * 'exit'; command-line entry points also call exitOnSignals()), so no relay, sink or Postfix master is
 * left running.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { freePort } from '../../test/cluster/proc.js';

const started = new Map<number, { name: string; group: boolean }>();
/** Extra cleanups (e.g. `postfix stop` for a daemonised master) run on exit. */
const cleanups = new Set<() => void>();

let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', killAll);
}

/** For command-line entry points: Ctrl-C or SIGTERM stops everything started, then exits. */
export function exitOnSignals(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** Kills every process this module started and still running (synchronous; used on exit). */
export function killAll(): void {
  for (const fn of cleanups) {
    try {
      fn();
    } catch {
      // best effort on the way out
    }
  }
  cleanups.clear();
  for (const [pid, p] of started) {
    try {
      process.kill(p.group ? -pid : pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  started.clear();
}

export function onExitCleanup(fn: () => void): () => void {
  hookExit();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export interface Started {
  name: string;
  child: ChildProcess;
  pid: number;
  log: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Own process group, so stop() signals the whole group (programs that fork workers). */
  group?: boolean;
}

/**
 * A log collector: `cat` appending its stdin to `log`. The program under test writes into a pipe, as it
 * does in a container (the runtime reads the pipe and writes the file), so its log writes never wait on
 * the file system's journal, which its own fsyncs keep busy.
 */
function logCollector(log: string): ChildProcess {
  const fd = fs.openSync(log, 'a');
  const cat = spawn('cat', [], { stdio: ['pipe', fd, 'ignore'] });
  fs.closeSync(fd);
  if (cat.pid !== undefined) started.set(cat.pid, { name: 'cat', group: false });
  cat.once('exit', () => {
    if (cat.pid !== undefined) started.delete(cat.pid);
  });
  return cat;
}

/** Starts `cmd` with stdout and stderr going, through a pipe, to `log`. */
export function startLogged(
  name: string,
  cmd: string,
  args: string[],
  log: string,
  opts: StartOptions = {},
): Started {
  hookExit();
  fs.mkdirSync(path.dirname(log), { recursive: true });
  const collector = logCollector(log);
  const spawnOpts: SpawnOptions = {
    stdio: ['ignore', collector.stdin!, collector.stdin!],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    detached: opts.group ?? false,
  };
  const child = spawn(cmd, args, spawnOpts);
  // The program holds the pipe's write end now; `cat` sees EOF when it (and its children) exit.
  collector.stdin!.destroy();
  if (child.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
  const pid = child.pid;
  const group = opts.group ?? false;
  started.set(pid, { name, group });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      started.delete(pid);
      resolve({ code, signal });
    });
    child.once('error', () => {
      started.delete(pid);
      resolve({ code: null, signal: null });
    });
  });
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(group ? -pid : pid, sig);
    } catch {
      // gone already
    }
  };
  return {
    name,
    child,
    pid,
    log,
    exited,
    async stop(graceMs = 10_000) {
      if (!started.has(pid)) return;
      signal('SIGTERM');
      const timer = setTimeout(() => signal('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end; kills it and rejects after `timeoutMs`. */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<RunResult> {
  hookExit();
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, cwd: opts.cwd, stdio: 'pipe' });
    if (child.pid !== undefined) started.set(child.pid, { name: cmd, group: false });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: still running after ${timeoutMs} ms (killed)`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) started.delete(child.pid);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin.end();
  });
}

/** true when a connection to host:port gets a "220" greeting within `timeoutMs`. */
export function greets(host: string, port: number, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    let buf = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (buf.includes('\n')) {
        if (buf.startsWith('220')) s.write('QUIT\r\n');
        done(buf.startsWith('220'));
      }
    });
    s.once('error', () => done(false));
  });
}

/** Polls `cond` every `intervalMs` until it holds; throws `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The last `lines` lines of a log file (for error messages). */
export function tailFile(file: string, lines = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export { freePort };

/** The mailfleet checkout the bench runs in (found upwards from the working directory). */
export function repoRoot(): string {
  let dir = process.cwd();
  for (let i = 0; i < 32; i++) {
    const pkg = path.join(dir, 'package.json');
    if (
      fs.existsSync(pkg) &&
      (JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'mailfleet'
    )
      return dir;
    dir = path.dirname(dir);
  }
  throw new Error('run from the mailfleet repository');
}

/** Runs a bench CLI's main, stops everything it started, and exits with its code (1 on an error). */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      killAll();
      process.exit(code);
    },
    (err: unknown) => {
      console.error(err);
      killAll();
      process.exit(1);
    },
  );
}
