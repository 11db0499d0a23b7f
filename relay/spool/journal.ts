/**
 * The journal: where a message that fits in one write (most mail) lives from its 250 until its first
 * delivery attempt ends, instead of in a file of its own (ADR 42). Most mail is delivered at once, and a
 * file per message cost a create, a directory fsync and an unlink each — ~200 µs of CPU per message,
 * against ~40 µs here (measured in-process, 20 writers, 4 KiB messages).
 *
 *   <dir>/journal/<segment>        records appended at the end, never rewritten (format.ts: a frame
 *                                  line, then the message exactly as a queue file holds it)
 *   <dir>/journal/<segment>.done   the IDs whose message left the journal, one per line
 *
 * Invariants
 * - append() resolves only once its record is durable: written, then covered by an fdatasync of the
 *   segment that began after the write (group commit: one fdatasync covers every record written before
 *   it started). A segment's directory entry is durable (fsync of journal/) before its first record.
 * - Records are written at the segment's end offset, which moves only after a write succeeded: a failed
 *   or partial write is overwritten by the next record, so every acknowledged record is followed only by
 *   complete records or by the remains of one that was never acknowledged (a torn tail).
 * - When a segment's fdatasync fails, the records it was to cover are refused (the caller answers 4xx),
 *   marked done, and the segment takes no more records.
 * - markDone() is made durable within DONE_SYNC_MS by an fdatasync of the .done file; a crash in that
 *   window brings a delivered message back (redelivery), never loses one — as a removal from queue/.
 * - A segment is deleted once every record in it is done and a newer one takes the appends. Records
 *   still live JOURNAL_MAX_AGE_MS after their segment filled are moved out by the Spool (isOld, onRoll),
 *   so a first attempt that hangs keeps one message on disk, not a whole segment.
 * - One writer: the Spool, which is the only user of this class (a journal belongs to one spool).
 *
 * What outlives a first attempt (a deferral), a restart or a crash leaves the journal: the Spool moves it
 * into queue/ (recover(), then discard()), so queue/ remains what the queue tools, recovery and
 * quarantine work on, and the journal never holds anything older than the relay process.
 */
import {
  constants as fsConstants,
  fdatasync as fdatasyncCb,
  read as readCb,
  writeSync,
  writevSync,
} from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { GroupSync } from './group-sync.js';
import { encodeFrame, parseSegment, type ParsedSegment } from './format.js';

/** A segment takes no more records past this size (default); the next one is created. */
const SEGMENT_BYTES = 16 * 1024 * 1024;
/**
 * A segment that stopped taking appends this long ago has its live records moved out (the Spool moves
 * them to queue/ when told by onRoll): the journal's disk use stays near what 60 s of mail takes,
 * whatever first attempts hang on slow sites.
 */
export const JOURNAL_MAX_AGE_MS = 60_000;
/** At the latest this long after markDone(), the .done file is fdatasynced. */
const DONE_SYNC_MS = 200;
const SEGMENT_NAME = /^s[0-9]{13,20}$/;
const CREATE = fsConstants.O_RDWR | fsConstants.O_CREAT | fsConstants.O_EXCL;

class Segment {
  /** Where the next record is written. */
  end = 0;
  doneEnd = 0;
  /** Records appended and not yet done. */
  live = 0;
  /** Takes no more records (full, or its fdatasync failed). */
  closed = false;
  /** When it stopped taking records. */
  closedAt = 0;
  readonly sync: GroupSync;
  readonly doneSync: GroupSync;

  constructor(
    readonly name: string,
    readonly data: FileHandle,
    readonly done: FileHandle,
  ) {
    this.sync = new GroupSync({ sync: () => fdatasync(data.fd) });
    this.doneSync = new GroupSync({ sync: () => fdatasync(done.fd) });
  }
}

export interface JournalOptions {
  now: () => number;
  /** Size at which a segment takes no more records (default 16 MiB). */
  segmentBytes?: number;
  /** Called after each new segment takes over: the time to move records out of old ones (isOld). */
  onRoll?: () => void;
}

/** Where a journaled message's bytes are (what a queue file would hold). */
export interface JournalPlace {
  readonly id: string;
  readonly segment: Segment;
  readonly offset: number;
  readonly length: number;
}

/** A segment left by an earlier run, read back whole: its records and which of them are done. */
export interface LeftSegment {
  readonly name: string;
  readonly bytes: Buffer;
  readonly parsed: ParsedSegment;
  readonly done: ReadonlySet<string>;
}

export class Journal {
  private current!: Segment;
  private readonly segments = new Set<Segment>();
  private rolling: Promise<void> | undefined;
  /** Segments being deleted (close() waits for them). */
  private readonly discarding = new Set<Promise<void>>();
  private seq: number;

  private constructor(
    private readonly dir: string,
    private readonly dirSync: GroupSync,
    private readonly dirHandle: FileHandle,
    private readonly opts: JournalOptions,
  ) {
    this.seq = opts.now();
  }

  /** Opens `dir` (which must exist); `left` names the segments an earlier run left (readLeft() each). */
  static async open(dir: string, opts: JournalOptions): Promise<{ journal: Journal; left: string[] }> {
    const handle = await fs.open(dir, 'r');
    const journal = new Journal(dir, new GroupSync(handle), handle, opts);
    const left = (await fs.readdir(dir)).filter((name) => SEGMENT_NAME.test(name)).sort();
    for (const name of left) journal.seq = Math.max(journal.seq, Number(name.slice(1)) + 1);
    return { journal, left };
  }

  /** One segment an earlier run left, read whole (one at a time: a segment is at most ~16 MiB). */
  async readLeft(name: string): Promise<LeftSegment> {
    const bytes = await fs.readFile(path.join(this.dir, name));
    const doneText = await fs.readFile(path.join(this.dir, `${name}.done`), 'latin1').catch(() => '');
    // the last line may be torn: only whole lines count
    const done = new Set(doneText.split('\n').slice(0, -1));
    return { name, bytes, parsed: parseSegment(bytes), done };
  }

  /** Deletes what an earlier run left (its messages are durable elsewhere by now), then takes appends. */
  async start(left: readonly string[]): Promise<void> {
    for (const name of left) {
      await fs.rm(path.join(this.dir, name), { force: true });
      await fs.rm(path.join(this.dir, `${name}.done`), { force: true });
    }
    // a .done file whose segment is gone (a crash between the two deletions) marks nothing any more
    for (const name of await fs.readdir(this.dir))
      if (name.endsWith('.done')) await fs.rm(path.join(this.dir, name), { force: true });
    this.current = await this.createSegment();
  }

  /**
   * Writes one record (the message bytes in `pieces`, `length` in all) and resolves once it is durable.
   * Rejects with the write's or the fdatasync's error; the record then does not count (see the header).
   */
  async append(id: string, pieces: readonly Buffer[], length: number): Promise<JournalPlace> {
    while (this.rolling || this.current.closed) {
      if (!this.rolling) this.roll(this.current);
      await this.rolling; // a segment that cannot be created refuses the message
    }
    const segment = this.current;
    const frame = encodeFrame(id, length);
    const at = segment.end;
    writeAllSync(segment.data.fd, [frame, ...pieces], at);
    segment.end = at + frame.length + length;
    segment.live++;
    const place: JournalPlace = { id, segment, offset: at + frame.length, length };
    if (segment.end >= (this.opts.segmentBytes ?? SEGMENT_BYTES)) this.roll(segment);
    try {
      await segment.sync.sync();
    } catch (err) {
      this.roll(segment);
      try {
        this.markDone(place);
      } catch {
        // a record that cannot be marked done may come back at the next start: the client, told 4xx,
        // may send it again (a duplicate, never a loss)
      }
      throw err;
    }
    return place;
  }

  /** Is the record in a segment that stopped taking appends JOURNAL_MAX_AGE_MS ago or earlier? */
  isOld(place: JournalPlace): boolean {
    return place.segment.closed && place.segment.closedAt <= this.opts.now() - JOURNAL_MAX_AGE_MS;
  }

  /** The message bytes of a record (from the page cache, most of the time). */
  read(place: JournalPlace): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(place.length);
    return new Promise((resolve, reject) =>
      readCb(place.segment.data.fd, buf, 0, place.length, place.offset, (err, n) => {
        if (err) reject(err);
        else if (n !== place.length)
          reject(new Error(`journal segment ${place.segment.name} is shorter than its record`));
        else resolve(buf);
      }),
    );
  }

  /**
   * Records that a message left the journal (delivered, bounced, moved to queue/). Throws when the
   * line cannot be written; the record then still counts, and the caller keeps the message.
   */
  markDone(place: JournalPlace): void {
    const { segment } = place;
    const line = Buffer.from(`${place.id}\n`, 'latin1');
    writeAllSync(segment.done.fd, [line], segment.doneEnd);
    segment.doneEnd += line.length;
    segment.live--;
    segment.doneSync.soon(DONE_SYNC_MS);
    if (segment.live === 0 && segment !== this.current) this.discardSoon(segment);
  }

  /** Makes done marks durable and lets go of the files; a segment with nothing live is deleted. */
  async close(): Promise<void> {
    while (this.rolling) await this.rolling.catch(() => undefined);
    for (const segment of [...this.segments]) {
      segment.doneSync.cancelSoon();
      if (segment.live === 0) await this.discard(segment);
      else {
        await segment.doneSync.sync().catch(() => undefined);
        this.segments.delete(segment);
        await segment.data.close().catch(() => undefined);
        await segment.done.close().catch(() => undefined);
      }
    }
    await Promise.all(this.discarding);
    await this.dirSync.sync().catch(() => undefined);
    await this.dirHandle.close().catch(() => undefined);
  }

  /** Starts a new segment for appends after `full` (once; appends wait for it). */
  private roll(full: Segment): void {
    if (!full.closed) {
      full.closed = true;
      full.closedAt = this.opts.now();
    }
    if (this.rolling || full !== this.current) return;
    this.rolling = this.createSegment()
      .then((next) => {
        this.current = next;
        if (full.live === 0) this.discardSoon(full);
        this.opts.onRoll?.();
      })
      .finally(() => {
        this.rolling = undefined;
      });
    this.rolling.catch(() => undefined); // appends see the failure as the old segment's, closed
  }

  private async createSegment(): Promise<Segment> {
    const name = `s${String(this.seq++).padStart(13, '0')}`;
    const data = await fs.open(path.join(this.dir, name), CREATE, 0o600);
    const done = await fs
      .open(path.join(this.dir, `${name}.done`), CREATE, 0o600)
      .catch(async (err: unknown) => {
        await data.close();
        throw err;
      });
    // the segment's directory entry is durable before any record in it is acknowledged
    await this.dirSync.sync();
    const segment = new Segment(name, data, done);
    this.segments.add(segment);
    return segment;
  }

  private discardSoon(segment: Segment): void {
    const p = this.discard(segment).finally(() => this.discarding.delete(p));
    this.discarding.add(p);
  }

  /** Deletes a segment whose records are all done (never rejects: a leftover is recovered as done). */
  private async discard(segment: Segment): Promise<void> {
    if (!this.segments.delete(segment)) return;
    segment.doneSync.cancelSoon();
    await segment.data.close().catch(() => undefined);
    await segment.done.close().catch(() => undefined);
    await fs.rm(path.join(this.dir, segment.name), { force: true });
    await fs.rm(path.join(this.dir, `${segment.name}.done`), { force: true });
    // a deleted segment that comes back after a power cut only holds records marked done
    this.dirSync.soon(DONE_SYNC_MS);
  }
}

/** pwritev at `at` until every byte is written (a regular file takes all of it but for a full disk). */
export function writeAllSync(fd: number, pieces: readonly Buffer[], at: number | null): number {
  const total = pieces.reduce((n, b) => n + b.length, 0);
  let done = writevSync(fd, pieces, at ?? undefined);
  if (done === total) return total;
  const rest = Buffer.concat(pieces, total);
  while (done < total) done += writeSync(fd, rest, done, total - done, at === null ? null : at + done);
  return total;
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasyncCb(fd, (err) => (err ? reject(err) : resolve())));
}
