/**
 * The latency probe: a small SMTP client of the benchmark's own that submits one message at a time, at
 * a modest fixed rate, while the load runs, and measures each submission from the moment MAIL FROM is
 * written to the moment the "250" after the final "." is read — what an application waits for.
 *
 * One connection, reused (its greeting and EHLO are not measured); commands are sent one at a time, no
 * pipelining. A tick that comes while the previous submission is still waiting is skipped, so a slow
 * server is not flooded and the latencies are not inflated by the probe's own backlog. Refused
 * submissions are counted, not measured. A connection lost mid-run is reopened. Every wait is bounded:
 * a server that does not greet within 10 s, or answer a command within 30 s, counts as a refusal.
 */
import net from 'node:net';

export interface ProbeOptions {
  host: string;
  port: number;
  /** Submissions per second. */
  rate: number;
  from: string;
  to: string;
  /** Body bytes (a few lines of text). */
  bytes?: number;
}

export interface ProbeResult {
  /** Submission latencies in ms, in order. */
  latencies: number[];
  /** Submissions that got a 250 (each is one more message for the sink). */
  accepted: number;
  refused: number;
  skippedTicks: number;
  reconnects: number;
}

const GREETING_TIMEOUT_MS = 10_000;
const REPLY_TIMEOUT_MS = 30_000;

class LineClient {
  private buf = '';
  private waiters: ((line: string | Error) => void)[] = [];
  private lines: string[] = [];
  private closed: Error | undefined;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i).replace(/\r$/, '');
        this.buf = this.buf.slice(i + 1);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      }
    });
    const fail = (err: Error) => {
      this.closed ??= err;
      for (const w of this.waiters.splice(0)) w(this.closed);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  private line(timeoutMs: number): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        reject(new Error(`no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push((x) => {
        clearTimeout(timer);
        if (x instanceof Error) reject(x);
        else resolve(x);
      });
    });
  }

  /** Reads one (possibly multi-line) reply; returns its code. */
  async reply(timeoutMs = REPLY_TIMEOUT_MS): Promise<number> {
    for (;;) {
      const l = await this.line(timeoutMs);
      if (l.length < 4 || l[3] !== '-') return Number(l.slice(0, 3));
    }
  }

  async command(text: string): Promise<number> {
    this.socket.write(text);
    return this.reply();
  }
}

async function connect(o: ProbeOptions): Promise<LineClient> {
  const socket = net.connect({ host: o.host, port: o.port });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('probe: connect timed out'));
    }, GREETING_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  const c = new LineClient(socket);
  if ((await c.reply(GREETING_TIMEOUT_MS)) !== 220) throw new Error('probe: no 220 greeting');
  if ((await c.command('EHLO probe.bench.test\r\n')) !== 250) throw new Error('probe: EHLO refused');
  return c;
}

function body(bytes: number): string {
  const head =
    'From: <probe@bench.example>\r\nTo: <probe@dest.example>\r\nSubject: latency probe\r\n' +
    `Message-ID: <${Date.now()}.${Math.random().toString(36).slice(2)}@probe.bench.test>\r\n\r\n`;
  const line = 'probe probe probe probe probe probe probe probe probe probe probe probe probe\r\n';
  return head + line.repeat(Math.max(1, Math.ceil(bytes / line.length))) + '.\r\n';
}

/** One submission; the latency in ms, or undefined when refused. */
async function submit(c: LineClient, o: ProbeOptions): Promise<number | undefined> {
  const t0 = process.hrtime.bigint();
  if ((await c.command(`MAIL FROM:<${o.from}>\r\n`)) !== 250) return undefined;
  if ((await c.command(`RCPT TO:<${o.to}>\r\n`)) !== 250) {
    await c.command('RSET\r\n');
    return undefined;
  }
  if ((await c.command('DATA\r\n')) !== 354) return undefined;
  const code = await c.command(body(o.bytes ?? 1024));
  if (code !== 250) return undefined;
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export class LatencyProbe {
  private readonly result: ProbeResult = {
    latencies: [],
    accepted: 0,
    refused: 0,
    skippedTicks: 0,
    reconnects: 0,
  };
  private client: LineClient | undefined;
  private busy: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly o: ProbeOptions) {}

  /** Connects (a failure is counted and retried at the next tick) and starts ticking. */
  async start(): Promise<void> {
    try {
      this.client = await connect(this.o);
    } catch {
      this.result.refused++;
    }
    this.timer = setInterval(() => this.tick(), 1000 / this.o.rate);
  }

  private tick(): void {
    if (this.busy) {
      this.result.skippedTicks++;
      return;
    }
    this.busy = this.once().finally(() => (this.busy = undefined));
  }

  private async once(): Promise<void> {
    try {
      if (!this.client) {
        this.result.reconnects++;
        this.client = await connect(this.o);
      }
      const ms = await submit(this.client, this.o);
      if (ms === undefined) this.result.refused++;
      else {
        this.result.accepted++;
        this.result.latencies.push(ms);
      }
    } catch {
      this.result.refused++;
      this.client?.socket.destroy();
      this.client = undefined;
    }
  }

  /** Stops ticking, lets the submission in flight finish, says QUIT. */
  async stop(): Promise<ProbeResult> {
    if (this.timer) clearInterval(this.timer);
    await this.busy;
    if (this.client) {
      await this.client.command('QUIT\r\n').catch(() => 0);
      this.client.socket.destroy();
    }
    return this.result;
  }
}
