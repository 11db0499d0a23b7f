/**
 * The project's test DNS server (test/helpers/dns-server.ts, a real process on loopback) with the one
 * zone the benchmarks need: the recipient domain has an MX, as the relay's RCPT check requires.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { onExitCleanup } from './proc.js';

export const RECIPIENT_DOMAIN = 'dest.example';
export const SENDER_DOMAIN = 'bench.example';

export interface DnsServer {
  /** "127.0.0.1:port", for the relay's dns.servers. */
  server: string;
  stop(): Promise<void>;
}

export async function startDns(repoRoot: string, dir: string): Promise<DnsServer> {
  const zone = path.join(dir, 'zone.json');
  fs.writeFileSync(
    zone,
    JSON.stringify({
      records: [
        {
          name: RECIPIENT_DOMAIN,
          type: 'MX',
          ttl: 3600,
          data: { preference: 10, exchange: `mx.${RECIPIENT_DOMAIN}` },
        },
        { name: `mx.${RECIPIENT_DOMAIN}`, type: 'A', ttl: 3600, data: '127.0.0.1' },
      ],
    }),
  );
  const child = spawn(
    process.execPath,
    ['--disable-warning=ExperimentalWarning', path.join(repoRoot, 'test/helpers/dns-server.ts'), zone, '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const unhook = onExitCleanup(() => child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const gone = new Promise<void>((r) => child.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`DNS server did not start: ${stderr}`)), 10_000);
    void gone.then(() => reject(new Error(`DNS server exited: ${stderr}`)));
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      try {
        const msg = JSON.parse(line) as { event?: string; port?: number };
        if (msg.event === 'ready' && msg.port) {
          clearTimeout(timer);
          resolve(msg.port);
        }
      } catch {
        // not ours
      }
    });
  });
  return {
    server: `127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGTERM');
      await gone;
      unhook();
    },
  };
}
