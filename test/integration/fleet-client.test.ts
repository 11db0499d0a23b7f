/**
 * The operator's GET /fleet client against a real HTTP server on loopback speaking the relay's contract:
 * the answer it parses, and errors that name the pod address and the HTTP status, or the timeout.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { HttpFleetClient } from '../../operator/smtprelay/fleet-client.js';

let server: http.Server;
let address: string;
let reply: (req: http.IncomingMessage, res: http.ServerResponse) => void;
const seen: Array<{ path?: string; auth?: string }> = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    seen.push({ path: req.url, auth: req.headers.authorization });
    reply(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

const json = (status: number, body: unknown) => (_req: http.IncomingMessage, res: http.ServerResponse) =>
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));

test('reads the state with the admin token, and a degraded pod’s reason (bounded)', async () => {
  const client = new HttpFleetClient(2000);
  reply = json(200, { state: 'shared', since: '2026-12-01T10:00:00Z' });
  await expect(client.fleetState(address, 'tok')).resolves.toEqual({ state: 'shared' });
  expect(seen.at(-1)).toEqual({ path: '/fleet', auth: 'Bearer tok' });

  reply = json(200, { state: 'degraded', error: `connect ECONNREFUSED ${'x'.repeat(400)}` });
  const d = await client.fleetState(address, 'tok');
  expect(d.state).toBe('degraded');
  expect(d.error).toHaveLength(300);
});

test('an error names the pod address and the HTTP status, or the bad answer', async () => {
  const client = new HttpFleetClient(2000);
  reply = json(401, { error: 'bad token' });
  await expect(client.fleetState(address, 'nope')).rejects.toThrow(
    `GET /fleet on ${address}: HTTP 401: bad token`,
  );
  reply = json(200, { state: 'sharing' });
  await expect(client.fleetState(address, 'tok')).rejects.toThrow(
    `GET /fleet on ${address}: unexpected state "sharing"`,
  );
});

test('a pod that does not answer fails within the timeout', async () => {
  const client = new HttpFleetClient(300);
  reply = () => {}; // never answers
  const start = Date.now();
  await expect(client.fleetState(address, 'tok')).rejects.toThrow(
    `GET /fleet on ${address}: no answer within 300 ms`,
  );
  expect(Date.now() - start).toBeLessThan(3000);
});
