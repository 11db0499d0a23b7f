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

const journalDir = () => path.join(dir, 'journal');
const segments = async (d = journalDir()) => (await fs.readdir(d)).filter((n) => !n.endsWith('.done')).sort();

/** Replaces the first `find` in the journal's segments by `replace` (same length), on disk. */
async function damageJournal(find: string, replace: string, d = journalDir()) {
  for (const name of await segments(d)) {
    const file = path.join(d, name);
    const bytes = await fs.readFile(file);
    const at = bytes.indexOf(find);
    if (at < 0) continue;
    bytes.write(replace, at, 'latin1');
    await fs.writeFile(file, bytes);
    return;
  }
  throw new Error(`${find} is not in the journal`);
}

/** What a crash leaves: a copy of the spool taken while it is open (the page cache is the disk here). */
async function crashCopy(): Promise<string> {
  const copy = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-crash-copy-'));
  await fs.cp(dir, copy, { recursive: true });
  await fs.rm(path.join(copy, 'lock'));
  copies.push(copy);
  return copy;
}
const copies: string[] = [];

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-'));
});
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
  await fs.rm(dir, { recursive: true, force: true });
  for (const c of copies.splice(0)) await fs.rm(c, { recursive: true, force: true });
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
    const other = id.slice(0, -1) + (id.endsWith('Z') ? 'Y' : 'Z'); // another ID, never this one
    await fs.writeFile(path.join(dir, 'queue', other), bytes.subarray(0, bytes.length - 10));

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
    // damage the journal record behind the spool's back: the first attempt still sends what was accepted
    await damageJournal('important', 'I');
    expect(await text(s.readBody(id))).toBe('important words');
    // the attempt deferred the message: it moved to queue/, and later attempts read that file, checked
    await s.saveState(id, { attempts: 1, nextAttemptAt: 0, recipients: {} });
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([id]);
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

describe('the journal (messages that fit in one write, until their first attempt ends)', () => {
  test('accepted mail is in the journal, not queue/; a removal leaves nothing behind at close', async () => {
    const s = await openSpool();
    const a = await s.accept(envelope(), chunks('first'));
    const b = await s.accept(envelope(), chunks('second'));
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    expect((await segments()).length).toBe(1);
    await s.remove(a.id);
    await s.remove(b.id);
    await s.close();
    expect(await fs.readdir(journalDir())).toEqual([]);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
  });

  test('after a crash, live records come back through queue/ and done ones do not', async () => {
    const s = await openSpool();
    const kept = await s.accept(envelope(), chunks('kept ', 'body'));
    const gone = await s.accept(envelope(), chunks('delivered'));
    const also = await s.accept(envelope({ recipients: ['c@example.com'] }), chunks('also kept'));
    await s.remove(gone.id);
    const copy = await crashCopy();

    const again = await Spool.open({ dir: copy });
    open.push(again);
    expect([...again.entries()].map((e) => e.id).sort()).toEqual([kept.id, also.id].sort());
    expect((await fs.readdir(path.join(copy, 'queue'))).sort()).toEqual([kept.id, also.id].sort());
    expect(await text(again.readBody(kept.id))).toBe('kept body');
    expect(again.get(also.id)?.envelope.recipients).toEqual(['c@example.com']);
    // the old segment is gone once its records are in queue/; a fresh one takes new mail
    expect(await segments(path.join(copy, 'journal'))).toHaveLength(1);
    expect(
      await fs.readFile(path.join(copy, 'journal', (await segments(path.join(copy, 'journal')))[0]!)),
    ).toHaveLength(0);
  });

  test('a .done file left without its segment (a crash while deleting it) is removed at start', async () => {
    const s = await openSpool();
    await s.close();
    await fs.writeFile(path.join(journalDir(), 's0000000000001.done'), 'X\n');
    await openSpool();
    expect((await fs.readdir(journalDir())).filter((n) => n.endsWith('.done'))).toHaveLength(1); // the new segment's
    expect(await fs.readdir(journalDir())).not.toContain('s0000000000001.done');
  });

  test('a record whose write never completed is dropped and counted; the ones before it are kept', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('whole'));
    const copy = await crashCopy();
    const [segment] = await segments(path.join(copy, 'journal'));
    const file = path.join(copy, 'journal', segment!);
    const bytes = await fs.readFile(file);
    await fs.appendFile(file, bytes.subarray(0, bytes.length - 5)); // a second record, cut short

    const metrics = new RelayMetrics({ defaultMetrics: false });
    const again = await Spool.open({ dir: copy, metrics });
    open.push(again);
    expect([...again.entries()].map((e) => e.id)).toEqual([id]);
    expect(await metrics.registry.getSingleMetricAsString('mailfleet_relay_spool_swept_total')).toContain(
      'kind="half_written"} 1',
    );
  });

  test('a damaged record is set aside in corrupt/ and the records after it are kept', async () => {
    const s = await openSpool();
    const bad = await s.accept(envelope(), chunks('important words'));
    const good = await s.accept(envelope(), chunks('other words'));
    const copy = await crashCopy();
    await damageJournal('important', 'Important', path.join(copy, 'journal'));

    const again = await Spool.open({ dir: copy });
    open.push(again);
    expect([...again.entries()].map((e) => e.id)).toEqual([good.id]);
    expect((await fs.readdir(path.join(copy, 'corrupt'))).sort()).toEqual([bad.id, `${bad.id}.reason`]);
    expect(await fs.readFile(path.join(copy, 'corrupt', `${bad.id}.reason`), 'utf8')).toMatch(
      /body checksum mismatch/,
    );
    expect(String(await fs.readFile(path.join(copy, 'corrupt', bad.id)))).toContain('Important words');
  });

  test('bytes without a readable frame are kept in corrupt/, and the records after them are found', async () => {
    const s = await openSpool();
    await s.accept(envelope(), chunks('lost frame'));
    const good = await s.accept(envelope(), chunks('found again'));
    const copy = await crashCopy();
    await damageJournal('MFJ1', 'XFJ1', path.join(copy, 'journal'));

    const again = await Spool.open({ dir: copy });
    open.push(again);
    expect([...again.entries()].map((e) => e.id)).toEqual([good.id]);
    const corrupt = await fs.readdir(path.join(copy, 'corrupt'));
    expect(corrupt).toHaveLength(2);
    const kept = corrupt.find((n) => !n.endsWith('.reason'))!;
    expect(String(await fs.readFile(path.join(copy, 'corrupt', kept)))).toContain('lost frame');
    expect(again.stats().corrupt).toBe(1);
  });

  test('a message moved to queue/ before a crash is not doubled by its journal record', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('moved'));
    const before = await crashCopy(); // the record, live
    await s.saveState(id, { attempts: 1, nextAttemptAt: 0, recipients: {} });
    // the queue file and state of the later moment, with the journal of the earlier one
    await fs.cp(path.join(dir, 'queue'), path.join(before, 'queue'), { recursive: true });
    await fs.cp(path.join(dir, 'state'), path.join(before, 'state'), { recursive: true });

    const again = await Spool.open({ dir: before });
    open.push(again);
    expect([...again.entries()].map((e) => e.id)).toEqual([id]);
    expect(again.get(id)?.state?.attempts).toBe(1);
    expect(await text(again.readBody(id))).toBe('moved');
  });

  test('full segments are deleted once their records are done; one with a live record is kept', async () => {
    const s = await Spool.open({ dir, journalSegmentBytes: 2048 });
    open.push(s);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await s.accept(envelope(), chunks('x'.repeat(600)))).id);
    expect((await segments()).length).toBeGreaterThan(3);
    for (const id of ids.slice(1)) await s.remove(id);
    // the first segment holds ids[0]; every other full one is gone, the current one stays
    // deletion runs in the background of the removals: wait until it is done (bounded)
    for (let i = 0; i < 200 && (await segments()).length > 2; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect((await segments()).length).toBe(2);
    expect(await text(s.readBody(ids[0]!))).toBe('x'.repeat(600));
    await s.close();
    // at close the live message moves to queue/ and the journal is empty
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([ids[0]]);
    expect(await fs.readdir(journalDir())).toEqual([]);
  });

  test('a message whose first attempt outlasts its segment by a minute moves to queue/, freeing the segment', async () => {
    let t = 1_700_000_000_000;
    const s = await Spool.open({ dir, journalSegmentBytes: 2048, now: () => t });
    open.push(s);
    const slow = await s.accept(envelope(), chunks('slow site'));
    const first = (await segments())[0]!;
    const fill = async () => {
      for (let i = 0; i < 4; i++) await s.remove((await s.accept(envelope(), chunks('x'.repeat(600)))).id);
    };
    await fill(); // the first segment fills and is closed; it stays for the message still in it
    expect(await segments()).toContain(first);
    t += 59_000;
    await fill();
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    t += 2_000;
    await fill(); // a roll a minute after the first segment closed moves the message out
    for (let i = 0; i < 200 && (await segments()).includes(first); i++)
      await new Promise((r) => setTimeout(r, 10));
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([slow.id]);
    expect(await segments()).not.toContain(first);
    expect(await text(s.readBody(slow.id))).toBe('slow site');
    // its attempt ends as any other: the removal takes the file
    await s.remove(slow.id);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
  });

  test('a quarantined journaled message is kept in corrupt/', async () => {
    const s = await openSpool();
    const { id } = await s.accept(envelope(), chunks('suspicious'));
    await s.quarantine(id, 'test says so');
    expect(s.count).toBe(0);
    expect(String(await fs.readFile(path.join(dir, 'corrupt', id)))).toContain('suspicious');
    await s.close();
    expect(await fs.readdir(journalDir())).toEqual([]);
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
