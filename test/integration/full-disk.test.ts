/**
 * A full disk, on a real file system of fixed size (a tmpfs mounted for the test; the test fails, not
 * skips, when it cannot mount, and unmounts whatever happens):
 *
 * - with a free-space floor (spool.minFreeSpacePercent 25 of 8 MiB): messages are accepted until the
 *   one that would take the file system below the floor, which gets 452 4.3.1 at the end of DATA and
 *   leaves no file (also when its client half-closed after the final dot); once something else takes
 *   the space below the floor, MAIL and RCPT get 452 4.3.1 (a line that is not UTF-8 and an unknown
 *   parameter keep their own replies), /readyz fails and says why, the metrics show it; delivery goes
 *   on, and when it has freed the space the relay is ready and accepts mail again;
 * - without a floor: a message larger than the space left fails mid-write (ENOSPC) and gets 452 4.3.1,
 *   never 250, and leaves no half-written file; the next message that fits is accepted.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { a, mx, startDnsServer, type TestDnsServer } from '../helpers/dns.js';
import { mountSmallFs, type SmallFs } from '../helpers/fs-faults.js';
import { makeTempDir, relayConfig, startRelay, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, type Reply } from '../helpers/smtp-client.js';
import { startDownstream, type Downstream } from '../helpers/smtp-downstream.js';

jest.setTimeout(90_000);

const MiB = 1024 * 1024;

let dns: TestDnsServer;
let downstream: Downstream;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  dns = await startDnsServer({ records: [mx('x.test', 'mail.x.test'), a('mail.x.test', '127.0.0.1')] });
  downstream = await startDownstream({ rules: { data: '451 4.3.0 try again later' } });
});

afterAll(async () => {
  // relays first (they hold files on the mounts), then the mounts
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
  await Promise.all([downstream?.stop(), dns?.stop()]);
});

async function relayOnSmallFs(bytes: number, spool: Record<string, unknown>) {
  const dir = await makeTempDir('mailfleet-full-disk-');
  const small: SmallFs = await mountSmallFs(path.join(dir, 'spool'), bytes);
  cleanups.push(() => small.unmount());
  const relay = await startRelay({
    dir,
    config: relayConfig({
      spool: { dir: 'spool', ...spool },
      dns: { servers: [dns.server], timeoutMs: 2000, tries: 1 },
      delivery: {
        route: { mode: 'smarthost', smarthost: { host: '127.0.0.1', port: downstream.port, tls: 'none' } },
        retry: { firstRetry: 1, maxBackoff: 1, maxLifetime: 3600 },
      },
    }),
  });
  cleanups.push(() => relay.stop());
  return { relay, small };
}

/** One transaction; the reply that ended it (the first refusal, or the end of DATA). */
async function send(client: SmtpClient, kib: number): Promise<{ stage: string; reply: Reply }> {
  for (const [stage, line] of [
    ['MAIL', 'MAIL FROM:<app@example.com>'],
    ['RCPT', 'RCPT TO:<rcpt@x.test>'],
    ['DATA', 'DATA'],
  ] as const) {
    const r = await client.command(line);
    if (r.code >= 400) {
      if (stage !== 'MAIL') await client.command('RSET');
      return { stage, reply: r };
    }
  }
  client.write('Subject: fill\r\n\r\n');
  const line = `${'y'.repeat(1022)}\r\n`;
  for (let i = 0; i < kib; i++) if (!client.write(line)) await client.drained();
  client.write('.\r\n');
  return { stage: 'end of DATA', reply: await client.reply(30_000) };
}

const queueFiles = (relay: RelayProcess) => fs.readdir(path.join(relay.spoolDir, 'queue'));
/**
 * A raw connection: writes `first`; once the relay's output contains `until`, writes `rest` and FIN (the
 * socket half-closes). Resolves with everything the relay wrote before it closed (bounded).
 */
function halfClose(port: number, first: Buffer, until?: string, rest: Buffer = Buffer.alloc(0)) {
  return new Promise<string>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the relay did not close; got ${JSON.stringify(got)}`));
    }, 30_000);
    s.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      if (until !== undefined && got.includes(until) && !s.writableEnded) s.end(rest);
    });
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(got);
    });
    if (until === undefined) s.end(first);
    else s.write(first);
  });
}
const replyLines = (output: string) => output.split('\r\n').filter((l) => /^\d{3} /.test(l));

const readyz = async (relay: RelayProcess) => {
  const r = await relay.admin('/readyz');
  return { status: r.status, ...(JSON.parse(r.body) as { ready: boolean; reasons: string[] }) };
};

test('below the free-space floor new mail gets 452 4.3.1, readiness fails, and delivery brings the space back', async () => {
  const { relay, small } = await relayOnSmallFs(8 * MiB, { minFreeSpacePercent: 25 });
  const client = await SmtpClient.connect(relay.ports.relay!);
  await client.command('EHLO client.test');

  // Fill with 500 KiB messages (delivery deferred) until one would cross the floor.
  const accepted: string[] = [];
  let last: { stage: string; reply: Reply } | undefined;
  for (let i = 0; i < 30; i++) {
    last = await send(client, 500);
    if (last.reply.code !== 250) break;
    accepted.push(/queued as (\S+)/.exec(last.reply.raw)![1]!);
  }
  expect(accepted.length).toBeGreaterThan(5);
  expect(last).toMatchObject({ stage: 'end of DATA', reply: { code: 452, enhanced: '4.3.1' } });
  expect(last!.reply.raw).toBe('452 4.3.1 Insufficient system storage, try again later');
  expect((await queueFiles(relay)).sort()).toEqual([...accepted].sort()); // the refused one left nothing
  expect(await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' })).toBe(
    accepted.length,
  );

  // The same again from a client that half-closes after its final dot: the 452, decided once the
  // message is written (after the FIN was read), still reaches it.
  const body = `Subject: fill\r\n\r\n${`${'y'.repeat(1022)}\r\n`.repeat(500)}.\r\n`;
  const halfClosed = await halfClose(
    relay.ports.relay!,
    Buffer.from('EHLO client.test\r\nMAIL FROM:<app@example.com>\r\nRCPT TO:<rcpt@x.test>\r\nDATA\r\n'),
    '\r\n354 ',
    Buffer.from(body),
  );
  expect(replyLines(halfClosed).at(-1)).toBe('452 4.3.1 Insufficient system storage, try again later');
  expect((await queueFiles(relay)).sort()).toEqual([...accepted].sort());

  // Less than 0.5 MiB above the floor now: a message declared at 1 MiB is refused before its DATA.
  const declared = await client.command('MAIL FROM:<app@example.com> SIZE=1048576');
  expect(declared.raw).toBe('452 4.3.1 Insufficient system storage, try again later');

  // A transaction open when something else on the volume takes the space below the floor.
  expect((await client.command('MAIL FROM:<app@example.com>')).code).toBe(250);
  const low = relay.nextLog((l) => l.event === 'spool_space_low');
  await fs.writeFile(path.join(small.dir, 'filler'), Buffer.alloc(1 * MiB, 1));
  await low;
  const rcpt = await client.command('RCPT TO:<rcpt@x.test>');
  expect(rcpt.raw).toBe('452 4.3.1 Insufficient system storage, try again later');
  await client.command('RSET');
  const mail = await client.command('MAIL FROM:<app@example.com>');
  expect(mail.raw).toBe('452 4.3.1 Insufficient system storage, try again later');

  const notReady = await readyz(relay);
  expect(notReady.status).toBe(503);
  expect(notReady.reasons).toEqual([
    expect.stringMatching(
      /^spool file system low on space: \d+\.\d% free \(\d+\.\d MiB of 8\.0 MiB\), below spool\.minFreeSpacePercent 25%$/,
    ),
  ]);
  expect(await relay.metric('mailfleet_relay_spool_space_low')).toBe(1);
  expect(
    await relay.metric('mailfleet_relay_spool_filesystem_free_ratio', { resource: 'space' }),
  ).toBeLessThan(0.25);
  expect(await relay.metric('mailfleet_relay_spool_filesystem_size_bytes')).toBe(8 * MiB);
  expect(
    await relay.metric('mailfleet_relay_messages_rejected_total', {
      reason: 'spool_full',
      listener: 'relay',
    }),
  ).toBe(4);
  expect(
    await relay.metric('mailfleet_relay_recipients_rejected_total', {
      reason: 'spool_full',
      listener: 'relay',
    }),
  ).toBe(1);
  expect(await relay.metric('mailfleet_relay_ready')).toBe(0);

  // The space check sits inside the rest of the pipeline: a line that is not UTF-8 and a parameter the
  // relay does not implement keep their own (permanent) replies; a good MAIL gets 452.
  const pipelined = await halfClose(
    relay.ports.relay!,
    Buffer.from(
      'EHLO client.test\r\nMAIL FROM:<j\xF6rg@example.com>\r\nMAIL FROM:<app@example.com> RET=HDRS\r\n' +
        'MAIL FROM:<app@example.com> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<rcpt@x.test>\r\nQUIT\r\n',
      'latin1',
    ),
  );
  expect(replyLines(pipelined).slice(2)).toEqual([
    '501 5.1.7 Sender address is not valid UTF-8',
    '555 5.5.4 MAIL FROM parameter not supported: RET',
    '452 4.3.1 Insufficient system storage, try again later',
    '503 5.5.1 Error: need MAIL command',
    '221 2.0.0 Bye',
  ]);

  // Delivery goes on: once the downstream takes the mail, the space comes back.
  const ok = relay.nextLog((l) => l.event === 'spool_space_ok', 30_000);
  await downstream.set({});
  await ok;
  expect(await readyz(relay)).toMatchObject({ status: 200, ready: true, reasons: [] });
  expect(await relay.metric('mailfleet_relay_spool_space_low')).toBe(0);
  const again = await send(client, 100);
  expect(again).toMatchObject({ stage: 'end of DATA', reply: { code: 250 } });
  await client.command('QUIT');
  client.close();
  await downstream.set({ data: '451 4.3.0 try again later' });
});

test('without a floor, a message that does not fit fails mid-write with 452 4.3.1 and leaves no file', async () => {
  const { relay } = await relayOnSmallFs(4 * MiB, { minFreeSpacePercent: 0, minFreeInodesPercent: 0 });
  const client = await SmtpClient.connect(relay.ports.relay!);
  await client.command('EHLO client.test');
  const big = await send(client, 6 * 1024);
  expect(big.stage).toBe('end of DATA');
  expect(big.reply.raw).toBe('452 4.3.1 Insufficient system storage, try again later');
  expect(await queueFiles(relay)).toEqual([]);
  expect(await fs.readdir(path.join(relay.spoolDir, 'tmp'))).toEqual([]);
  expect(
    await relay.metric('mailfleet_relay_messages_received_total', { listener: 'relay' }),
  ).toBeUndefined();
  expect(relay.logs.some((l) => l.msg === 'message refused' && l.reason === 'spool_full')).toBe(true);

  const small = await send(client, 64);
  expect(small).toMatchObject({ stage: 'end of DATA', reply: { code: 250 } });
  await client.command('QUIT');
  client.close();
});
