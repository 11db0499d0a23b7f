/**
 * The delivery's routes on the admin port (relay/admin/server.ts): the drain contract the operator
 * calls, and the queue API the `mailfleet-relay queue` tool uses.
 *
 *   GET  /drain                     {"state","queued","handedOff","delivered","failed"}
 *   POST /drain                     optional {"peers": ["host:port", …]} → 202 and the status
 *   GET  /queue                     {"messages": [QueueItem…]}
 *   GET  /queue/message?id=ID       QueueItem plus "headers"               404 when unknown
 *   POST /queue/retry               {"id": ID} or {"all": true}            404 unknown, 409 active
 *   POST /queue/delete              {"id": ID}                             404 unknown, 409 active,
 *                                                                          500 when the file cannot go
 *
 * Everything but GET /drain is registered as `mutating`: it needs the admin bearer token when
 * admin.tokenFile is set (else loopback clients only) — the queue listing shows addresses, so it is
 * protected like the actions. Bad input is 400 with {"error": …} (BadRequest, relay/admin/server.ts).
 */
import { BadRequest, readJson, sendJson, type RouteHandler } from '../admin/server.js';
import type { Drainer } from './drain.js';
import { parsePeer } from './handoff.js';
import type { QueueOps } from './queue-ops.js';

export interface RouteRegistrar {
  route(method: string, path: string, handler: RouteHandler, opts?: { mutating?: boolean }): void;
}

export interface DeliveryRoutesDeps {
  drainer: Drainer;
  ops: QueueOps;
  /** Why hand-off cannot work with the current config (no handoff section), or undefined when it can. */
  handoffProblem: () => string | undefined;
}

export function registerDeliveryRoutes(admin: RouteRegistrar, deps: DeliveryRoutesDeps): void {
  const { drainer, ops } = deps;
  admin.route('GET', '/drain', (_req, res) => sendJson(res, 200, drainer.status()));
  admin.route(
    'POST',
    '/drain',
    async (req, res) => {
      const body = await readJson(req);
      const peers = body.peers ?? [];
      if (!Array.isArray(peers) || !peers.every((p) => typeof p === 'string'))
        throw new BadRequest('"peers" must be a list of "host:port" strings');
      for (const p of peers) {
        try {
          parsePeer(p);
        } catch (err) {
          throw new BadRequest((err as Error).message);
        }
      }
      const problem = peers.length ? deps.handoffProblem() : undefined;
      if (problem) return sendJson(res, 409, { error: problem });
      sendJson(res, 202, drainer.start(peers));
    },
    { mutating: true },
  );

  admin.route('GET', '/queue', (_req, res) => sendJson(res, 200, { messages: ops.list() }), {
    mutating: true,
  });
  admin.route(
    'GET',
    '/queue/message',
    async (_req, res, url) => {
      const item = await ops.show(url.searchParams.get('id') ?? '');
      if (!item) return sendJson(res, 404, { error: 'no such message' });
      sendJson(res, 200, item);
    },
    { mutating: true },
  );
  admin.route(
    'POST',
    '/queue/retry',
    async (req, res) => {
      const body = await readJson(req);
      if (body.all === true) return sendJson(res, 200, { scheduled: await ops.retryAll() });
      const id = requireId(body);
      const result = await ops.retry(id);
      if (result === 'not-found') return sendJson(res, 404, { error: 'no such message' });
      if (result === 'active')
        return sendJson(res, 409, { error: 'the message is being delivered right now' });
      sendJson(res, 200, { scheduled: 1 });
    },
    { mutating: true },
  );
  admin.route(
    'POST',
    '/queue/delete',
    async (req, res) => {
      const id = requireId(await readJson(req));
      const result = await ops.delete(id).catch((err: Error) => err);
      if (result instanceof Error)
        return sendJson(res, 500, {
          error: `could not remove ${id}: ${result.message}; it stays in the queue`,
        });
      if (result === 'not-found') return sendJson(res, 404, { error: 'no such message' });
      if (result === 'active')
        return sendJson(res, 409, { error: 'the message is being delivered right now; try again' });
      sendJson(res, 200, { deleted: 1 });
    },
    { mutating: true },
  );
}

function requireId(body: Record<string, unknown>): string {
  if (typeof body.id !== 'string' || body.id === '') throw new BadRequest('"id" (a queue ID) is required');
  return body.id;
}
