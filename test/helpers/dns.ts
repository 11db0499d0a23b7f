/**
 * Starts the test DNS server (dns-server.ts) as a child process and talks to it.
 *
 *   const dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')],
 *                                      servfail: ['broken.test'], timeout: ['slow.test'] });
 *   relay config: dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 }
 *     (generous on purpose: a loaded 2-core CI machine can stall this server's process for a while, and a
 *     relay that times out answers 451 4.4.3; only names listed in `timeout` ever wait it out)
 *   dns.queries()                  every question asked so far (to check caching)
 *   await dns.setZone({...})       replace the zone (SIGHUP), resolves once it is in force
 *   await dns.stop()
 *
 * Record builders below cover what mail needs (MX, null MX, A, AAAA, TXT for DKIM/SPF/DMARC).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export interface ZoneRecord {
  name: string;
  type: 'A' | 'AAAA' | 'MX' | 'TXT' | 'CNAME' | 'NS';
  ttl?: number;
  data: unknown;
}

export interface ZoneFile {
  records: ZoneRecord[];
  /** Names answered with SERVFAIL. */
  servfail?: string[];
  /** Names never answered (resolver timeout). */
  timeout?: string[];
  /** Names whose UDP answers are truncated (forces TCP). */
  truncate?: string[];
  /** Names answered only after this many milliseconds. */
  delayMs?: Record<string, number>;
}

export const mx = (name: string, exchange: string, preference = 10, ttl = 60): ZoneRecord => ({
  name,
  type: 'MX',
  ttl,
  data: { preference, exchange },
});
export const nullMx = (name: string): ZoneRecord => mx(name, '.', 0);
export const a = (name: string, address: string, ttl = 60): ZoneRecord => ({
  name,
  type: 'A',
  ttl,
  data: address,
});
export const aaaa = (name: string, address: string, ttl = 60): ZoneRecord => ({
  name,
  type: 'AAAA',
  ttl,
  data: address,
});
export const txt = (name: string, data: string | string[], ttl = 60): ZoneRecord => ({
  name,
  type: 'TXT',
  ttl,
  data,
});

export interface DnsQuery {
  name: string;
  type: string;
  transport: 'udp' | 'tcp';
}

export interface TestDnsServer {
  /** "127.0.0.1:PORT", for config.dns.servers. */
  server: string;
  port: number;
  queries(): DnsQuery[];
  setZone(zone: ZoneFile): Promise<void>;
  stop(): Promise<void>;
}

const SERVER_SCRIPT = path.join(__dirname, 'dns-server.ts');

export interface DnsServerOptions {
  /** Address to serve on (default 127.0.0.1), e.g. a real-node cluster's hostAddress. */
  host?: string;
  /** Port (default: a free one). */
  port?: number;
}

export async function startDnsServer(zone: ZoneFile, opts: DnsServerOptions = {}): Promise<TestDnsServer> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mailfleet-dns-'));
  const zoneFile = path.join(dir, 'zone.json');
  await fs.writeFile(zoneFile, JSON.stringify(zone));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--disable-warning=ExperimentalWarning',
      SERVER_SCRIPT,
      zoneFile,
      String(opts.port ?? 0),
      opts.host ?? '127.0.0.1',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const queries: DnsQuery[] = [];
  const waiters: { event: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if (msg.event === 'query') queries.push(msg as unknown as DnsQuery);
    for (const w of waiters.filter((x) => x.event === msg.event)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(msg);
    }
  });
  const next = (event: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      waiters.push({ event, resolve });
      child.once('exit', (code) => reject(new Error(`dns-server exited (${code}): ${stderr}`)));
    });
  const ready = await next('ready');
  const port = Number(ready.port);
  // A server that dies under a test makes every lookup fail (the relay answers 451 4.4.3 to all): say so.
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping)
      console.error(
        `test DNS server on port ${port} (pid ${child.pid}) exited during the test: code ${code}, signal ${signal}\n${stderr}`,
      );
  });
  return {
    server: `${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    queries: () => [...queries],
    async setZone(z) {
      await fs.writeFile(zoneFile, JSON.stringify(z));
      const reloaded = next('reloaded');
      child.kill('SIGHUP');
      await reloaded;
    },
    async stop() {
      stopping = true;
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
