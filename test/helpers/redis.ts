/**
 * Starts a real redis-server (Debian's, installed by scripts/test-tools.sh) as a child process on
 * 127.0.0.1, for the fleet store's tests. Nothing is persisted (--save '' --appendonly no) and its
 * working directory is a temp dir removed by stop().
 *
 *   const redis = await startRedis({ password: 'secret' });
 *   new FleetStore({ url: redis.url, password: 'secret', ... })
 *   await redis.kill('SIGKILL')   the store vanishes mid-load (no shutdown, connections reset)
 *   await redis.restart()         the same port again, empty (scripts flushed: NOSCRIPT on the next EVALSHA)
 *   redis.pause(); redis.resume() SIGSTOP/SIGCONT: connections stay open, nothing is answered meanwhile
 *   await redis.stop()
 *
 * Ports: redis-server has no "pick a free one" (--port 0 turns TCP off), so a port the kernel just gave
 * to a probe socket is used, and another is tried if the server then finds it taken. Readiness is an
 * answer to PING on that port (+PONG, or -NOAUTH with a password), polled until it comes or the
 * process exits; the server's log is kept for the error when it never does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TestRedis {
  /** redis://127.0.0.1:PORT (no credentials). */
  url: string;
  port: number;
  pid(): number | undefined;
  stop(): Promise<void>;
  /** Sends `signal` (default SIGKILL) and waits for the process to exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the server again on the same port (after kill() or stop() of the process). */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: a server that holds its connections open and answers nothing (a stalled store). */
  pause(): void;
  resume(): void;
}

export interface RedisOptions {
  /** --requirepass */
  password?: string;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '1mb']. */
  args?: string[];
}

const READY_TIMEOUT_MS = 20_000;

async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  return port;
}

/** One PING over a fresh connection: true when the server answers it (PONG, or NOAUTH: it is up). */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d: Buffer) => {
      reply += d.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

export async function startRedis(opts: RedisOptions = {}): Promise<TestRedis> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mailfleet-redis-'));
  let child: ChildProcess | undefined;
  let log = '';
  let stopping = false;

  const launch = async (port: number): Promise<'ready' | 'port-taken'> => {
    log = '';
    const args = [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--dir', dir,
      '--save', '',
      '--appendonly', 'no',
      '--daemonize', 'no',
      '--logfile', '',
      ...(opts.password ? ['--requirepass', opts.password] : []),
      ...(opts.args ?? []),
    ]; // prettier-ignore
    const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    proc.stdout.on('data', (d: Buffer) => (log += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
    let exited = false;
    proc.once('exit', () => (exited = true));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (let i = 0; Date.now() < deadline; i++) {
      if (exited) return /Address already in use/i.test(log) ? 'port-taken' : fail(`exited: ${log}`);
      if (await ping(port)) return 'ready';
      await new Promise((r) => setTimeout(r, Math.min(100, 10 * (i + 1))));
    }
    proc.kill('SIGKILL');
    return fail(`no answer to PING within ${READY_TIMEOUT_MS} ms: ${log}`);
  };

  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    if ((await launch(port)) === 'ready') break;
    if (attempt >= 4) fail(`no free port after ${attempt + 1} tries`);
  }
  // A server that dies under a test (not through kill/stop) makes every command fail: say so.
  const watch = (proc: ChildProcess) =>
    proc.once('exit', (code, signal) => {
      if (!stopping && proc === child && !killing)
        console.error(`test redis-server on port ${port} exited during the test: ${code ?? signal}\n${log}`);
    });
  let killing = false;
  watch(child!);

  const exit = async (signal: NodeJS.Signals) => {
    const proc = child;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill(signal);
    await exited;
  };

  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    pid: () => child?.pid,
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT'),
    async kill(signal = 'SIGKILL') {
      killing = true;
      await exit(signal);
    },
    async restart() {
      killing = true;
      child?.kill('SIGCONT');
      await exit('SIGTERM');
      // The port was ours a moment ago; another process taking it meanwhile is a test failure.
      if ((await launch(port)) !== 'ready') fail(`port ${port} was taken while restarting`);
      killing = false;
      watch(child!);
    },
    async stop() {
      stopping = true;
      child?.kill('SIGCONT'); // a paused server would never act on SIGTERM
      await exit('SIGTERM');
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

function fail(message: string): never {
  throw new Error(`test redis-server: ${message}`);
}
