/**
 * SIGTERM: the relay stops accepting (listeners closed, readiness false), idle sessions get 421, a
 * transaction in flight may finish within --shutdown-grace, then the spool is closed and the process
 * exits 0. A transaction that does not finish in time is cut off and leaves nothing in the spool.
 */
import net from 'node:net';
import { Spool } from '../../relay/spool/spool.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';

jest.setTimeout(60_000);

let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
});
afterAll(async () => dns?.stop());

const config = () => relayConfig({ dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 } });

async function openTransaction(port: number): Promise<SmtpClient> {
  const c = await SmtpClient.connect(port);
  await c.command('EHLO client.test');
  expect((await c.command('MAIL FROM:<app@example.com>')).code).toBe(250);
  expect((await c.command('RCPT TO:<r@mx.test>')).code).toBe(250);
  expect((await c.command('DATA')).code).toBe(354);
  c.write('Subject: in flight\r\n\r\nfirst half\r\n');
  return c;
}

const refused = (port: number) =>
  new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
  });

test('SIGTERM: stop accepting, 421 to idle sessions, let the transaction in flight finish, exit 0', async () => {
  const relay = await startRelay({ config: config(), args: ['--shutdown-grace', '10'] });
  const port = relay.ports.relay!;
  const idle = await SmtpClient.connect(port);
  await idle.command('EHLO idle.test');
  const busy = await openTransaction(port);

  const stopping = relay.nextLog((l) => l.event === 'stopping');
  process.kill(relay.pid, 'SIGTERM');
  await stopping;

  expect((await idle.reply()).raw).toBe('421 4.3.2 Service shutting down, try again later');
  await idle.closed;
  expect(await refused(port)).toBe('ECONNREFUSED');
  const ready = await relay.admin('/readyz');
  expect(ready).toEqual({ status: 503, body: '{"ready":false,"reasons":["stopping"]}\n' });

  const done = await busy.command('second half\r\n.');
  expect(done.raw).toMatch(/^250 2\.0\.0 Ok: queued as [0-9A-Z]+$/);
  const id = done.raw.split(' ').pop()!;
  expect((await busy.command('MAIL FROM:<app@example.com>')).raw).toBe(
    '421 4.3.2 Service shutting down, try again later',
  );
  await busy.closed;

  expect(await relay.exited).toEqual({ code: 0, signal: null });
  expect(relay.logs.some((l) => l.event === 'stopped')).toBe(true);
  const spool = await Spool.open({ dir: relay.spoolDir });
  try {
    expect(spool.get(id)).toBeDefined();
  } finally {
    await spool.close();
  }
});

test('a transaction that does not finish within the grace period is cut off; nothing half-written stays', async () => {
  const relay = await startRelay({ config: config(), args: ['--shutdown-grace', '1'] });
  const stalled = await openTransaction(relay.ports.relay!);
  const started = Date.now();
  process.kill(relay.pid, 'SIGTERM');
  await stalled.closed;
  expect(await relay.exited).toEqual({ code: 0, signal: null });
  expect(Date.now() - started).toBeLessThan(8000);
  expect(relay.logs.some((l) => l.msg === 'shutdown grace period over; closing sessions in flight')).toBe(
    true,
  );
  const spool = await Spool.open({ dir: relay.spoolDir });
  try {
    expect(spool.count).toBe(0);
  } finally {
    await spool.close();
  }
});

test('SIGINT stops the same way', async () => {
  const relay = await startRelay({ config: config() });
  expect(await relay.stop('SIGINT')).toEqual({ code: 0, signal: null });
});
