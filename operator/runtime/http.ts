/**
 * The operator's HTTP endpoints: /metrics on the metrics address, /healthz and /readyz on the probe
 * address (controller-runtime's split). Addresses are "host:port" (":8080" binds every interface; port 0
 * picks a free port, which the returned server reports; "0" alone disables the server).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export function parseBindAddress(addr: string): { host: string; port: number } | undefined {
  if (addr === '0' || addr === '') return undefined;
  const i = addr.lastIndexOf(':');
  const host = (i >= 0 ? addr.slice(0, i) : '').replace(/^\[|\]$/g, '') || '0.0.0.0';
  const port = Number(i >= 0 ? addr.slice(i + 1) : addr);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid bind address "${addr}"`);
  return { host, port };
}

export type Check = () => string | undefined;

async function listen(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

export async function serveMetrics(
  addr: string,
  registry: Registry,
): Promise<{ server: Server; port: number } | undefined> {
  const bind = parseBindAddress(addr);
  if (!bind) return undefined;
  const server = createServer((req, res) => {
    if (req.method === 'GET' && req.url?.split('?')[0] === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'Content-Type': registry.contentType });
          res.end(body);
        })
        .catch((e: unknown) => {
          res.writeHead(500).end(String(e));
        });
      return;
    }
    res.writeHead(404).end('not found\n');
  });
  return { server, port: await listen(server, bind.host, bind.port) };
}

/** /healthz and /readyz: 200 "ok" when every check returns undefined, else 500 with the failures. */
export async function serveProbes(
  addr: string,
  checks: { healthz: Check[]; readyz: Check[] },
): Promise<{ server: Server; port: number } | undefined> {
  const bind = parseBindAddress(addr);
  if (!bind) return undefined;
  const server = createServer((req, res) => {
    const path = req.url?.split('?')[0];
    const list = path === '/healthz' ? checks.healthz : path === '/readyz' ? checks.readyz : undefined;
    if (!list || req.method !== 'GET') {
      res.writeHead(404).end('not found\n');
      return;
    }
    const failures = list.map((c) => c()).filter((x): x is string => x !== undefined);
    res.writeHead(failures.length ? 500 : 200, { 'Content-Type': 'text/plain' });
    res.end(failures.length ? failures.join('\n') + '\n' : 'ok\n');
  });
  return { server, port: await listen(server, bind.host, bind.port) };
}
