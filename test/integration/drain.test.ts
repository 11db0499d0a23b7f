/**
 * Draining, between real relay processes: relay A holds a queue it cannot deliver; `mailfleet-relay
 * drain --peer` makes it stop accepting and hand every message to peer relay B over SMTP (submission
 * port, STARTTLS verified against the fleet CA, AUTH as the handoff identity), keeping each envelope
 * (null sender included). All messages end at B's downstream, none are left at A, none are lost. A drain
 * without peers flushes deferred mail and finishes delivering it.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import {
  makeTempDir,
  PARKED_DELIVERY,
  RELAY_CLI,
  relayConfig,
  startRelay,
  writeUsersFile,
  type RelayProcess,
} from '../helpers/relay.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';
import { makeCa, makeCert, writeCert } from '../helpers/tls.js';
import { Spool } from '../../relay/spool/spool.js';

jest.setTimeout(90_000);

const run = promisify(execFile);
const TOKEN = 'drain-test-token';
const N = 40;

let dns: TestDnsServer;
let downstream: Downstream;

beforeAll(async () => {
  downstream = await startDownstream();
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
});
afterAll(async () => {
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

async function send(relay: RelayProcess, testId: string): Promise<void> {
  const client = nodemailer.createTransport({ host: '127.0.0.1', port: relay.ports.relay, ignoreTLS: true });
  try {
    await client.sendMail({
      envelope: { from: 'app@example.com', to: ['a@x.test', 'b@x.test'] },
      raw: `From: <app@example.com>\r\nSubject: ${testId}\r\nX-Test-Id: ${testId}\r\n\r\nqueued at A\r\n`,
    });
  } finally {
    client.close();
  }
}

async function drainStatus(relay: RelayProcess) {
  return JSON.parse((await relay.admin('/drain')).body) as Record<string, unknown>;
}

test('drain with hand-off: every queued message ends at the peer, with its envelope, none left', async () => {
  const ca = makeCa();
  // Peer B: submission with TLS and AUTH (the handoff identity), delivering to the downstream.
  const bDir = await makeTempDir();
  await writeCert(bDir, makeCert(ca, { names: ['localhost', '127.0.0.1'] }));
  await writeUsersFile(path.join(bDir, 'users'), { 'mailfleet-handoff': 'fleet-secret' });
  const peer = await startRelay({
    dir: bDir,
    config: relayConfig({
      listeners: { submission: { address: '127.0.0.1', port: 0 } },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: { usersFile: 'users' },
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
      },
    }),
  });

  // Relay A: cannot deliver (parked); already holds a bounce (null sender) from before.
  const aDir = await makeTempDir();
  await fs.writeFile(path.join(aDir, 'ca.pem'), ca.certPem);
  await fs.writeFile(path.join(aDir, 'handoff-pass'), 'fleet-secret\n');
  await fs.writeFile(path.join(aDir, 'admin-token'), `${TOKEN}\n`);
  const spool = await Spool.open({ dir: path.join(aDir, 'spool') });
  const bounceId = `bounce-${process.pid}`;
  await spool.accept(
    {
      mailFrom: '',
      recipients: ['app@example.com'],
      receivedAt: Date.now(),
      listener: 'internal',
      client: { address: '' },
    },
    Readable.from([`Subject: Undelivered Mail\r\nX-Test-Id: ${bounceId}\r\n\r\nreport\r\n`]),
  );
  await spool.close();
  const relayA = await startRelay({
    dir: aDir,
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: { ...PARKED_DELIVERY, retry: { firstRetry: 3600, maxBackoff: 3600, maxLifetime: 86400 } },
      handoff: { username: 'mailfleet-handoff', passwordFile: 'handoff-pass', caFile: 'ca.pem' },
      admin: { address: '127.0.0.1', port: 0, tokenFile: 'admin-token' },
    }),
  });

  try {
    const ids = Array.from({ length: N }, (_, i) => `handoff-${process.pid}-${i}`);
    for (const id of ids) await send(relayA, id);
    expect(await drainStatus(relayA)).toMatchObject({ state: 'idle', queued: N + 1 });

    // the token is required
    expect((await relayA.admin('/drain', { method: 'POST', body: '{}' })).status).toBe(401);

    const peerAddress = `127.0.0.1:${peer.ports.submission}`;
    const cli = await run(
      process.execPath,
      [
        RELAY_CLI,
        'drain',
        '--config', // for admin.tokenFile; the admin port is random here, so it is given too
        relayA.configFile,
        '--admin',
        `http://127.0.0.1:${relayA.ports.admin}`,
        '--peer',
        '127.0.0.1:1', // a peer that is down: its share goes to the next peer
        '--peer',
        peerAddress,
        '--wait',
        '--json',
      ],
      { cwd: aDir },
    );
    const lines = cli.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toEqual({ state: 'drained', queued: 0, handedOff: N + 1, delivered: 0, failed: 0 });

    // nothing left at A, which no longer accepts mail
    expect((await fs.readdir(path.join(relayA.spoolDir, 'queue'))).length).toBe(0);
    expect((await relayA.admin('/readyz')).status).toBe(503);
    expect(await relayA.metric('mailfleet_relay_draining')).toBe(1);
    expect(await relayA.metric('mailfleet_relay_handoffs_total', { result: 'ok' })).toBe(N + 1);
    await expect(send(relayA, 'too-late')).rejects.toThrow();

    // everything arrives downstream through B, with its original envelope
    await downstream.waitForMessages(N + 1, 30_000);
    const got = new Map(downstream.messages.map((m) => [m.testId, m]));
    for (const id of ids)
      expect(got.get(id)).toMatchObject({ from: 'app@example.com', to: ['a@x.test', 'b@x.test'] });
    expect(got.get(bounceId)).toMatchObject({ from: '', to: ['app@example.com'] });
    expect(await peer.metric('mailfleet_relay_messages_received_total', { listener: 'submission' })).toBe(
      N + 1,
    );
  } finally {
    await relayA.stop();
    await peer.stop();
  }
});

test('drain without peers flushes deferred mail and finishes delivering it', async () => {
  await downstream.set({ rcptDefault: '451 4.3.0 not now' });
  const relay = await startRelay({
    config: relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        retry: { firstRetry: 3600, maxBackoff: 3600, maxLifetime: 86400 },
      },
    }),
  });
  try {
    const ids = Array.from({ length: 5 }, (_, i) => `flush-${process.pid}-${i}`);
    for (const id of ids) await send(relay, id);
    for (
      let i = 0;
      i < 500 && (await relay.metric('mailfleet_relay_spool_messages', { state: 'deferred' })) !== 5;
      i++
    )
      await new Promise((r) => setTimeout(r, 20));
    expect(await relay.metric('mailfleet_relay_spool_messages', { state: 'deferred' })).toBe(5);

    await downstream.set({});
    const started = await relay.admin('/drain', { method: 'POST' }); // loopback: no token configured
    expect(started.status).toBe(202);
    for (let i = 0; i < 500 && (await drainStatus(relay)).state !== 'drained'; i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(await drainStatus(relay)).toEqual({
      state: 'drained',
      queued: 0,
      handedOff: 0,
      delivered: 5,
      failed: 0,
    });
    const seen = new Set(downstream.messages.map((m) => m.testId));
    expect(ids.filter((id) => !seen.has(id))).toEqual([]);
  } finally {
    await relay.stop();
    await downstream.set({});
  }
});
