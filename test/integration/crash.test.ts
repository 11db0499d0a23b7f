/**
 * "250 means on disk", end to end: many SMTP clients submit concurrently, the relay is SIGKILLed in the
 * middle of the burst, and every message that got "250 2.0.0 Ok: queued as ID" is in the spool, intact,
 * when it is opened again. The relay then restarts on the same spool (half-written files swept).
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { Spool } from '../../relay/spool/spool.js';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient } from '../helpers/smtp-client.js';

jest.setTimeout(120_000);

let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('mx.test', 'mail.mx.test'), a('mail.mx.test', '127.0.0.1')] });
});
afterAll(async () => dns?.stop());

const config = () => relayConfig({ dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 } });

/** A body of 1–40 KiB, unique per message, with lines that need dot-stuffing. */
function bodyFor(n: number): string {
  const filler = randomBytes(1 + ((n * 7919) % 20_000)).toString('hex');
  return `Subject: message ${n}\r\nX-Seq: ${n}\r\n\r\n.dot line ${n}\r\n${filler.replace(/(.{76})/g, '$1\r\n')}\r\n`;
}

/**
 * One client: messages back to back on one connection until the relay goes away. Resolves with the
 * reply that stopped it before the kill (an unexpected refusal), or undefined once the relay is gone.
 */
async function client(
  port: number,
  next: () => number,
  acked: Map<string, string>,
  onAck: () => void,
): Promise<string | undefined> {
  let c: SmtpClient;
  try {
    c = await SmtpClient.connect(port);
    const r = await c.command('EHLO crash.test');
    if (r.code !== 250) return `EHLO: ${r.raw}`;
  } catch {
    return undefined;
  }
  try {
    for (;;) {
      const n = next();
      const body = bodyFor(n);
      let r = await c.command('MAIL FROM:<app@example.com>');
      if (r.code !== 250) return `MAIL: ${r.raw}`;
      r = await c.command(`RCPT TO:<r${n}@mx.test>`);
      if (r.code !== 250) return `RCPT: ${r.raw}`;
      r = await c.command('DATA');
      if (r.code !== 354) return `DATA: ${r.raw}`;
      c.write(body.replace(/^\./gm, '..'));
      r = await c.command('.');
      const id = /^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$/.exec(r.raw)?.[1];
      if (!id) return `end of data: ${r.raw}`;
      acked.set(id, body);
      onAck();
    }
  } catch {
    return undefined; // the relay was killed: whatever was acknowledged so far is what counts
  } finally {
    c.close();
  }
}

test.each([1, 2, 3])('SIGKILL mid-burst loses no acknowledged message (round %i)', async (round) => {
  let relay: RelayProcess = await startRelay({ config: config() });
  const acked = new Map<string, string>();
  let counter = 0;
  const killAfter = 100 * round;
  let reached!: () => void;
  const enoughAcked = new Promise<void>((resolve) => (reached = resolve));
  const onAck = (): void => void (acked.size >= killAfter && reached());
  const clients = Array.from({ length: 20 }, () => client(relay.ports.relay!, () => counter++, acked, onAck));
  // The kill comes once enough is acknowledged; clients that all stop before that (refused) end the wait.
  const early = await Promise.race([enoughAcked.then(() => undefined), Promise.all(clients)]);
  await relay.kill();
  await Promise.all(clients);
  expect({ refusedBeforeTheKill: early?.filter(Boolean) }).toEqual({ refusedBeforeTheKill: undefined });
  expect(acked.size).toBeGreaterThanOrEqual(killAfter);

  const spool = await Spool.open({ dir: relay.spoolDir });
  try {
    const missing = [...acked.keys()].filter((id) => !spool.get(id));
    expect(missing).toEqual([]);
    for (const [id, body] of acked) {
      const stored = await text(spool.readBody(id));
      expect(stored.startsWith('Received: ')).toBe(true);
      expect(stored.endsWith(body)).toBe(true);
    }
    expect(await fs.readdir(path.join(relay.spoolDir, 'corrupt'))).toEqual([]);
  } finally {
    await spool.close();
  }

  // The relay starts again on the same spool and keeps the acknowledged messages.
  relay = await startRelay({ dir: relay.dir, config: config() });
  try {
    const recovered = await relay.waitForLog((l) => l.msg === 'spool recovered');
    expect(recovered.messages).toBeGreaterThanOrEqual(acked.size);
  } finally {
    await relay.stop();
  }
});
