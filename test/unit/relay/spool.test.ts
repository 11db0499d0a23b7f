import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { text } from 'node:stream/consumers';
import { RelayMetrics } from '../../../relay/metrics.js';
import type { Envelope } from '../../../relay/spool/envelope.js';
import { CorruptEntryError, Spool, SpoolLockedError } from '../../../relay/spool/spool.js';

const envelope = (over: Partial<Envelope> = {}): Envelope => ({
  mailFrom: 'app@example.com',
  recipients: ['a@example.org', 'b@example.net'],
  receivedAt: 1_700_000_000_000,
  listener: 'relay',
  client: { address: '127.0.0.1', helo: 'client.test' },
  ...over,
});

async function* chunks(...parts: string[]) {
  for (const p of parts) yield Buffer.from(p);
}

let dir: string;
const open: Spool[] = [];
async function openSpool(opts: { metrics?: RelayMetrics; now?: () => number } = {}) {
  const s = await Spool.open({ dir, ...opts });
  open.push(s);
  return s;
}
async function reopen(s: Spool, opts: { metrics?: RelayMetrics } = {}) {
  await s.close();
  return openSpool(opts);
}

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await fs.rm(dir, { recursive: true, force: true });
});

describe('accept', () => {
  test('a message accepted is on disk and comes back whole after a reopen', async () => {
    const s = await openSpool();
    const body = 'Subject: hi\r\n\r\nhello\r\n';
    const { id, size } = await s.accept(envelope(), chunks('Subject: hi\r\n', '\r\nhello\r\n'));
    expect(size).toBe(Buffer.byteLength(body));
    expect(id).toMatch(/^[0-9A-Z]{17}$/);

    const again = await reopen(s);
    expect(again.get(id)?.envelope).toEqual(envelope());
    expect(await text(again.readBody(id))).toBe(body);
  });

  test('IDs sort by acceptance time', async () => {
    let t = 1_700_000_000_000;
    const s = await openSpool({ now: () => t++ });
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await s.accept(envelope(), chunks(`m${i}`))).id);
    expect([...ids].sort()).toEqual(ids);
  });

  test('an empty body and a large body both round-trip', async () => {
    const s = await openSpool();
    const empty = await s.accept(envelope(), chunks());
    const big = Buffer.alloc(3 * 1024 * 1024 + 17, 'x');
    async function* bigBody() {
      for (let off = 0; off < big.length; off += 10_000) yield big.subarray(off, off + 10_000);
    }
    const large = await s.accept(envelope(), bigBody());
    const again = await reopen(s);
    expect(await text(again.readBody(empty.id))).toBe('');
    expect((await text(again.readBody(large.id))).length).toBe(big.length);
  });

  test('a body that fails mid-stream leaves nothing behind and rejects', async () => {
    const s = await openSpool();
    async function* failing() {
      yield Buffer.from('Subject: partial\r\n');
      throw new Error('size limit exceeded');
    }
    await expect(s.accept(envelope(), failing())).rejects.toThrow('size limit exceeded');
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    expect(s.count).toBe(0);
  });

  test('listeners hear about each accepted message', async () => {
    const s = await openSpool();
    const seen: string[] = [];
    s.on('accepted', (e) => seen.push(e.id));
    const { id } = await s.accept(envelope(), chunks('x'));
    expect(seen).toEqual([id]);
  });
});

describe('recovery at start', () => {
  test('a half-written file (no end record) is removed and counted', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('whole'));
    await s.close();
    const file = path.join(dir, 'queue', id);
    const bytes = await fs.readFile(file);
    await fs.writeFile(path.join(dir, 'queue', id.slice(0, -1) + 'Z'), bytes.subarray(0, bytes.length - 10));

    const metrics = new RelayMetrics({ defaultMetrics: false });
    const again = await openSpool({ metrics });
    expect([...again.entries()].map((e) => e.id)).toEqual([id]);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([id]);
    expect(await metrics.registry.getSingleMetricAsString('mailfleet_relay_spool_swept_total')).toContain(
      'kind="half_written"} 1',
    );
  });

  test('a file with an end record but a damaged envelope is moved to corrupt/ with a reason', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('body'));
    await s.close();
    const file = path.join(dir, 'queue', id);
    const bytes = await fs.readFile(file);
    bytes.write('#', 'MAILFLEET-SPOOL 1\n'.length + 1); // break the JSON
    await fs.writeFile(file, bytes);

    const again = await openSpool();
    expect(again.count).toBe(0);
    expect((await fs.readdir(path.join(dir, 'corrupt'))).sort()).toEqual([id, `${id}.reason`]);
    expect(await fs.readFile(path.join(dir, 'corrupt', `${id}.reason`), 'utf8')).toMatch(
      /envelope is not JSON/,
    );
    expect(again.stats().corrupt).toBe(1);
  });

  test('a file whose size disagrees with its end record is set aside, not delivered', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('0123456789'));
    await s.close();
    const file = path.join(dir, 'queue', id);
    const bytes = await fs.readFile(file);
    const cut = bytes.indexOf('0123456789');
    await fs.writeFile(file, Buffer.concat([bytes.subarray(0, cut), bytes.subarray(cut + 3)]));
    const again = await openSpool();
    expect(again.count).toBe(0);
    expect(await fs.readdir(path.join(dir, 'corrupt'))).toContain(id);
  });

  test('a damaged body is detected when it is read back', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('important words'));
    await s.close();
    const file = path.join(dir, 'queue', id);
    const bytes = await fs.readFile(file);
    bytes[bytes.indexOf('important')] = 'I'.charCodeAt(0);
    await fs.writeFile(file, bytes);
    const again = await openSpool();
    await expect(text(again.readBody(id))).rejects.toBeInstanceOf(CorruptEntryError);
    await again.quarantine(id, 'body checksum mismatch');
    expect(again.count).toBe(0);
    expect(await fs.readdir(path.join(dir, 'corrupt'))).toContain(id);
  });

  test('a just-accepted body is served from memory until its first attempt ends; then from the file', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('important ', 'words'));
    // damage the file behind the spool's back: the first attempt still sends what was accepted
    const file = path.join(dir, 'queue', id);
    const bytes = await fs.readFile(file);
    bytes[bytes.indexOf('important')] = 'I'.charCodeAt(0);
    await fs.writeFile(file, bytes);
    expect(await text(s.readBody(id))).toBe('important words');
    // the attempt deferred the message: later attempts read the file, which is checked
    await s.saveState(id, { attempts: 1, nextAttemptAt: 0, recipients: {} });
    await expect(text(s.readBody(id))).rejects.toBeInstanceOf(CorruptEntryError);
  });

  test('stray files and leftover scratch are handled', async () => {
    const s = await openSpool();
    await s.close();
    await fs.writeFile(path.join(dir, 'queue', 'not-an-id.txt'), 'x');
    await fs.writeFile(path.join(dir, 'tmp', 'scratch'), 'x');
    await fs.writeFile(path.join(dir, 'state', '0000000000000000Q'), '{}');
    const again = await openSpool();
    expect(again.count).toBe(0);
    expect(await fs.readdir(path.join(dir, 'tmp'))).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'state'))).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'corrupt'))).toContain('not-an-id.txt');
  });
});

describe('delivery state', () => {
  test('saved state survives a reopen; removal deletes message and state', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('x'));
    const state = {
      attempts: 1,
      nextAttemptAt: 1_700_000_300_000,
      recipients: {
        'a@example.org': { status: 'delivered' as const },
        'b@example.net': { status: 'pending' as const },
      },
    };
    await s.saveState(id, state);
    const again = await reopen(s);
    expect(again.get(id)?.state).toEqual(state);
    await again.remove(id);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'state'))).toEqual([]);
    const third = await reopen(again);
    expect(third.count).toBe(0);
  });

  test('removal deletes state saved in this run, and needs none for mail without state', async () => {
    const s = await openSpool();
    const a = await s.accept(envelope(), chunks('a'));
    const b = await s.accept(envelope(), chunks('b'));
    await s.saveState(a.id, { attempts: 1, nextAttemptAt: 0, recipients: {} });
    await s.remove(a.id);
    await s.remove(b.id);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'state'))).toEqual([]);
    expect(s.count).toBe(0);
  });

  test('unreadable state means a full retry, not a lost message', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('x'));
    await s.close();
    await fs.writeFile(path.join(dir, 'state', id), '{"attempts":');
    const again = await openSpool();
    expect(again.get(id)).toBeDefined();
    expect(again.get(id)?.state).toBeUndefined();
  });

  test('a state file that is JSON but not a delivery state also means a full retry', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('x'));
    await s.close();
    await fs.writeFile(path.join(dir, 'state', id), '{"attempts":1,"recipients":{"a@example.org":{}}}');
    const again = await openSpool();
    expect(again.get(id)).toBeDefined();
    expect(again.get(id)?.state).toBeUndefined();
    expect(await fs.readdir(path.join(dir, 'state'))).toEqual([]);
  });

  test('stats tell ready, deferred and active apart and report the oldest age', async () => {
    let now = 1_700_000_000_000;
    const metrics = new RelayMetrics({ defaultMetrics: false });
    const s = await openSpool({ now: () => now, metrics });
    const a = await s.accept(envelope({ receivedAt: now }), chunks('aaaa'));
    const b = await s.accept(envelope({ receivedAt: now }), chunks('bb'));
    const c = await s.accept(envelope({ receivedAt: now }), chunks('c'));
    await s.saveState(b.id, { attempts: 1, nextAttemptAt: now + 60_000, recipients: {} });
    s.activeIds = new Set([c.id]);
    now += 30_000;
    const st = s.stats(s.activeIds);
    expect(st.ready).toEqual({ messages: 1, bytes: 4 });
    expect(st.deferred).toEqual({ messages: 1, bytes: 2 });
    expect(st.active).toEqual({ messages: 1, bytes: 1 });
    expect(st.oldestAgeSeconds).toBe(30);
    const scraped = await metrics.registry.metrics();
    expect(scraped).toContain('mailfleet_relay_spool_messages{state="deferred"} 1');
    expect(scraped).toContain('mailfleet_relay_spool_bytes{state="ready"} 4');
    expect(scraped).toContain('mailfleet_relay_oldest_message_age_seconds 30');
    void a;
  });
});

describe('ownership', () => {
  test('a second relay cannot open a spool in use', async () => {
    await openSpool();
    await expect(Spool.open({ dir })).rejects.toBeInstanceOf(SpoolLockedError);
  });

  test('a lock left by a dead process is taken over', async () => {
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'lock'), '999999999\n');
    const s = await openSpool();
    expect(await s.probeWritable()).toBe(true);
  });
});
