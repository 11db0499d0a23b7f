/**
 * The admin HTTP port: /metrics (Prometheus text format), /healthz (liveness), /readyz (readiness), and
 * a small route table the delivery side extends (/drain, /queue…).
 *
 *   GET /healthz  200 "ok" while the process serves HTTP at all.
 *   GET /readyz   200 {"ready":true} once the config is loaded and the spool is writable and above its
 *                 free-space floor, and while not draining or stopping; else 503 {"ready":false,
 *                 "reasons":[…]}. The spool probe (create + fsync a file) runs at most once a second
 *                 whatever the probe rate.
 *   GET /metrics  the relay's registry.
 *
 * A route handler that throws BadRequest gets 400 {"error": …}; readJson() reads a bounded JSON body.
 * Routes registered with `{ mutating: true }` change state; they need "Authorization: Bearer <token>"
 * when admin.tokenFile is set, and are only served to loopback clients when it is not.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import type { Logger } from '../log.js';
import type { RelayMetrics } from '../metrics.js';

export interface Readiness {
  ready: boolean;
  reasons: string[];
}

export type RouteHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  url: URL,
) => Promise<void> | void;

export interface AdminOptions {
  metrics: RelayMetrics;
  log: Logger;
  readiness: () => Promise<Readiness>;
  /** The bearer token for mutating routes, if one is configured (read per request: rotations apply). */
  token?: () => string | undefined;
}

interface Route {
  handler: RouteHandler;
  mutating: boolean;
}

/** Bad input to a route: answered 400 with the message. */
export class BadRequest extends Error {}

const MAX_BODY = 64 * 1024;

/** The request body as a JSON object ({} when empty). */
export async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new BadRequest('request body too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new BadRequest('request body is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new BadRequest('request body must be a JSON object');
  return value as Record<string, unknown>;
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function isLoopback(address: string | undefined): boolean {
  return !!address && (address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.'));
}

export class AdminServer {
  private readonly routes = new Map<string, Route>();
  private readonly server: http.Server;

  constructor(private readonly opts: AdminOptions) {
    this.route('GET', '/healthz', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    });
    this.route('GET', '/readyz', async (_req, res) => {
      const r = await opts.readiness();
      sendJson(res, r.ready ? 200 : 503, r);
    });
    this.route('GET', '/metrics', async (_req, res) => {
      const body = await opts.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': opts.metrics.registry.contentType });
      res.end(body);
    });
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        opts.log.error({ err, url: req.url }, 'admin request failed');
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
  }

  /** Registers a route; `mutating` routes need the admin token (see the module header). */
  route(method: string, path: string, handler: RouteHandler, opts: { mutating?: boolean } = {}): void {
    this.routes.set(`${method} ${path}`, { handler, mutating: opts.mutating ?? false });
  }

  async listen(address: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(new Error(`admin: cannot listen on ${address}:${port}: ${err.message}`));
      this.server.once('error', onError);
      this.server.listen(port, address, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const route = this.routes.get(`${req.method} ${url.pathname}`);
    if (!route) {
      const exists = [...this.routes.keys()].some((k) => k.endsWith(` ${url.pathname}`));
      sendJson(res, exists ? 405 : 404, { error: exists ? 'method not allowed' : 'not found' });
      return;
    }
    if (route.mutating && !this.authorized(req)) {
      sendJson(res, 401, { error: 'admin token required' });
      return;
    }
    try {
      await route.handler(req, res, url);
    } catch (err) {
      if (!(err instanceof BadRequest)) throw err;
      sendJson(res, 400, { error: err.message });
    }
  }

  private authorized(req: http.IncomingMessage): boolean {
    const token = this.opts.token?.();
    if (!token) return isLoopback(req.socket.remoteAddress);
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}
