/**
 * At-least-once under a crash: the relay is SIGKILLed while it accepts and delivers a stream of
 * messages from concurrent clients. After a restart on the same spool, every message it acknowledged
 * with 250 reaches the downstream at least once (counted by a unique X-Test-Id header), and the queue
 * ends empty with nothing set aside as corrupt.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(120_000);

let dns: TestDnsServer;
let downstream: Downstream;

beforeAll(async () => {
  downstream = await startDownstream();
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
});
afterAll(async () => {
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

const SENDERS = 8;
const MAX_MESSAGES = 1500;

test.each([1, 2])(
  'SIGKILL during delivery under load loses no acknowledged message (round %i)',
  async (round) => {
    const dir = await makeTempDir();
    const config = relayConfig({
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        concurrency: 20,
        retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
      },
    });
    await downstream.set({ dataDelayMs: 500 }); // much slower than intake: a backlog builds up
    let relay: RelayProcess = await startRelay({ dir, config });
    const acked = new Set<string>();
    const deliveredBefore = downstream.messages.length;
    const killAfterAcked = 150 * round;
    let stop = false;
    let next = 0;

    const sender = async (n: number) => {
      const client = nodemailer.createTransport({
        host: '127.0.0.1',
        port: relay.ports.relay,
        ignoreTLS: true,
      });
      try {
        while (!stop && next < MAX_MESSAGES) {
          const testId = `crash-${round}-${process.pid}-${next++}-${n}`;
          try {
            await client.sendMail({
              envelope: { from: 'app@example.com', to: ['rcpt@x.test'] },
              raw: `From: <app@example.com>\r\nSubject: ${testId}\r\nX-Test-Id: ${testId}\r\n\r\n${'body line\r\n'.repeat(50)}`,
            });
            acked.add(testId); // the relay answered 250
          } catch {
            return; // the relay is gone: this message was never acknowledged
          }
        }
      } finally {
        client.close();
      }
    };
    const senders = Array.from({ length: SENDERS }, (_, n) => sender(n));

    // kill while clients are still sending, with deliveries in flight and a backlog queued
    for (let i = 0; i < 6000; i++) {
      if (acked.size >= killAfterAcked && downstream.messages.length - deliveredBefore >= 10) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(acked.size).toBeGreaterThanOrEqual(killAfterAcked);
    await relay.kill();
    const deliveredAtKill = downstream.messages.length - deliveredBefore;
    stop = true;
    await Promise.all(senders);
    await downstream.set({});
    // acknowledged mail was still queued (and some in delivery) when the process died
    expect(acked.size).toBeGreaterThan(deliveredAtKill + 20);

    relay = await startRelay({ dir, config });
    try {
      const missing = () => {
        const seen = new Set(downstream.messages.map((m) => m.testId));
        return [...acked].filter((id) => !seen.has(id));
      };
      for (let i = 0; i < 10_000 && missing().length > 0; i++) {
        await downstream.waitForMessages(downstream.messages.length + 1, 30_000).catch(() => undefined);
      }
      expect(missing()).toEqual([]);
      // the queue drains completely: nothing stuck, nothing damaged
      for (let i = 0; i < 200; i++) {
        const q = JSON.parse((await relay.admin('/queue')).body) as { messages: unknown[] };
        if (q.messages.length === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(JSON.parse((await relay.admin('/queue')).body)).toEqual({ messages: [] });
      expect(await fs.readdir(path.join(relay.spoolDir, 'corrupt'))).toEqual([]);
    } finally {
      await relay.stop();
    }
  },
);
