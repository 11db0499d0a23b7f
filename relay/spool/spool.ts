/**
 * The durable spool: accepted mail lives here until it is delivered, bounced or handed off.
 *
 *   <dir>/journal/       messages that fit in one write, from their 250 until their first attempt
 *                        ends (journal.ts, ADR 42): records appended to a segment, group-committed
 *   <dir>/queue/<id>     a file per message (format.ts): envelope, body, end record. Immutable. Larger
 *                        messages from the start; journaled ones once deferred, or when the relay stops
 *   <dir>/state/<id>     delivery progress (delivery/state.ts), JSON, replaced atomically and durably;
 *                        absent until the first attempt. Its meaning is delivery's: the spool checks
 *                        its shape when it reads it back and otherwise only stores it.
 *   <dir>/corrupt/<id>   damaged messages, set aside with a <id>.reason note; never deleted by us.
 *   <dir>/tmp/           scratch for atomic replaces and the writability probe.
 *   <dir>/lock           pid of the relay that owns the spool.
 *
 * Invariants (what "durable" means here: it survives a power cut, not only a killed process; ADR 36)
 * - accept() resolves only after the message is durable; only then may the caller answer 250. A
 *   journaled one: its record is written and a group-committed fdatasync of the segment that began after
 *   the write has returned (journal.ts). Any other: the message file (fdatasync) and its directory entry
 *   (group-committed directory fsync). A crash at any moment loses nothing that was acknowledged. The
 *   file is created in place with O_EXCL, not renamed: until its end record is written and synced it is
 *   half-written, which recovery recognises (below).
 * - A journaled message whose first attempt ends without removing it (saveState) is first written to
 *   queue/<id> durably, then marked done in the journal; so is one whose segment filled more than a
 *   minute ago (at the next roll), what is left at close(), and at open() what a crash left. A crash in between leaves both copies, and the one in queue/ wins.
 * - The directories themselves are durable before the first message: open() fsyncs the parent of every
 *   directory it creates, and the spool directory (whose entries are queue/, state/, ...) on every start.
 * - saveState() resolves only after the new state file (fdatasync) and its rename into state/
 *   (group-committed fsync of state/) are durable, so a recorded outcome never comes back undone after
 *   a power cut: a recipient whose 250 was recorded is not sent the message again.
 * - A file without its end record was never acknowledged: it is removed at start (half-written).
 *   A file whose end record, envelope or checksum is wrong is moved to corrupt/, never silently dropped.
 * - Delivery is at-least-once: a removal is made durable by the next directory fsync, which the next
 *   accept() asks for, or within REMOVAL_SYNC_MS when none comes (a journaled message's done mark: by an
 *   fdatasync of its .done file within as long); a crash in that window can only bring a delivered
 *   message back (redelivery), never lose one. Removals do not wait for an fsync of their
 *   own: that halved the directory fsyncs under load and shortened every accept's wait behind them.
 * - Below the free-space floor (space.ts, ADR 8) accept() refuses client mail with SpoolFullError, also
 *   when the message itself took the file system below it (checked before its fdatasync); bounces
 *   (useReserve) and delivery state may use the reserve. ENOSPC/EDQUOT while writing is SpoolFullError
 *   too. Whatever fails, the file is removed: never a 250, never a half-written entry left to sweep.
 * - One relay per spool directory (lock file); the in-memory index is rebuilt from disk at start and is
 *   only a cache of what the directories say.
 * - One writer per queued message: accept() adds it (sessions, bounces); after that only the queue
 *   manager calls saveState(), remove() and quarantine() (Postfix: only qmgr moves queue files). The
 *   drain and the queue tools ask the queue manager; eslint.config.js keeps other callers out.
 *
 * Memory stays bounded whatever the message size: bodies stream through in chunks of WRITE_CHUNK, and are
 * read back whole only up to SMALL_BODY.
 *
 * A freshly accepted small body is also kept in memory (up to BODY_CACHE_BYTES in all) until its first
 * attempt ends: most mail is delivered at once, and reading back what was just written cost an open, a
 * read and a close per message. The file stays the source of truth: the copy is dropped when the message
 * is removed, deferred or set aside, and a message recovered at start is always read from disk.
 * Why both a journal and files (ADR 42): a file per message keeps removal, quarantine, recovery and the
 * queue tools simple (ADR 2), but its create, directory fsync and unlink cost ~200 µs of CPU per message,
 * most of it for mail delivered at once. The journal takes that mail for ~40 µs; whatever stays longer
 * becomes a file, so the tools and recovery only ever see queue/.
 *
 * A message that ends within WRITE_CHUNK (most mail) is read whole first and journaled with one write;
 * a longer one is streamed to its own file.
 */
import { EventEmitter } from 'node:events';
import {
  close as closeCb,
  closeSync,
  constants as fsConstants,
  createReadStream,
  fdatasync as fdatasyncCb,
  open as openCb,
  read as readCb,
} from 'node:fs';
import fs, { type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { crc32 } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { parseDeliveryState, type DeliveryState } from '../delivery/state.js';
import type { RelayMetrics } from '../metrics.js';
import type { Envelope } from './envelope.js';
import { GroupSync } from './group-sync.js';
import { Journal, writeAllSync, type JournalPlace, type LeftSegment } from './journal.js';
import { SpaceMonitor, SpoolFullError, isOutOfSpace, type SpaceFloor, type SpaceReading } from './space.js';
import {
  MAX_HEADER_BYTES,
  TRAILER_LENGTH,
  decodeHeader,
  decodeTrailer,
  encodeHeader,
  encodeTrailer,
  type JournalRecord,
} from './format.js';

const WRITE_CHUNK = 64 * 1024;
/** Bodies up to this size are read back with one read (most mail); larger ones are streamed. */
const SMALL_BODY = 64 * 1024;
/** At the latest this long after a removal, the directory is fsynced (see the invariants). */
const REMOVAL_SYNC_MS = 200;
/** In-memory copies of just-accepted small bodies, in all (a few thousand typical messages). */
const BODY_CACHE_BYTES = 16 * 1024 * 1024;

export interface SpoolEntry {
  readonly id: string;
  readonly envelope: Envelope;
  /** Body bytes. */
  readonly size: number;
  readonly bodyOffset: number;
  readonly crc: number;
  /** Delivery progress (delivery/state.ts), stored here but read and written by the queue manager. */
  state?: DeliveryState;
}

export class CorruptEntryError extends Error {
  constructor(
    readonly id: string,
    readonly reason: string,
  ) {
    super(`spool entry ${id} is damaged: ${reason}`);
  }
}

export class SpoolLockedError extends Error {}

interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}
const silent: Log = { info() {}, warn() {}, error() {} };

export interface SpoolOptions {
  dir: string;
  metrics?: RelayMetrics;
  log?: Log;
  now?: () => number;
  /** The free-space floor in force (read at each check, so reloads apply); none when absent. */
  floor?: () => SpaceFloor;
  /** statfs of the spool directory (a seam for unit tests; default: the real one). */
  readSpace?: (dir: string) => Promise<SpaceReading>;
  /** Size at which a journal segment takes no more records (for tests; default 16 MiB). */
  journalSegmentBytes?: number;
}

export interface AcceptOptions {
  /**
   * Internal mail (bounces, delay notices) may use the space below the free-space floor: delivery must
   * go on while new mail is refused. Mail from clients may not.
   */
  useReserve?: boolean;
}

const NO_FLOOR: SpaceFloor = { minFreeSpacePercent: 0, minFreeInodesPercent: 0 };

interface SpoolEvents {
  accepted: [SpoolEntry];
}

/** Random bytes for IDs, drawn 4 KiB at a time (one randomBytes call per message cost ~12 us). */
let idEntropy = Buffer.alloc(0);
let idEntropyAt = 0;

/** Time-ordered, unique, filename-safe message IDs (Postfix-like: short, upper case). */
export function newMessageId(now: number): string {
  if (idEntropyAt + 5 > idEntropy.length) {
    idEntropy = randomBytes(4096);
    idEntropyAt = 0;
  }
  const random = idEntropy.readUIntBE(idEntropyAt, 5).toString(36).padStart(8, '0');
  idEntropyAt += 5;
  return (now.toString(36).padStart(9, '0') + random).toUpperCase();
}
const ID_PATTERN = /^[0-9A-Z]{9,24}$/;

export class Spool extends EventEmitter<SpoolEvents> {
  /** Messages being delivered right now; set by the queue manager so metrics can tell them apart. */
  activeIds: ReadonlySet<string> = new Set();
  private readonly index = new Map<string, SpoolEntry>();
  /** Bodies of just-accepted small messages, until their first attempt ends (see the header). */
  private readonly bodyCache = new Map<string, Buffer>();
  /** Messages that live in the journal (accepted in this run, first attempt not ended). */
  private readonly journaled = new Map<string, JournalPlace>();
  private readonly leaving = new Map<string, Promise<void>>();
  private bodyCacheBytes = 0;
  private corruptCount = 0;
  private closed = false;
  /** Free space and inodes of the spool's file system, against the floor (space.ts). */
  readonly space: SpaceMonitor;
  private readonly now: () => number;
  private readonly log: Log;
  private readonly queueDir: string;
  private readonly stateDir: string;
  private readonly corruptDir: string;
  private readonly tmpDir: string;

  private constructor(
    readonly dir: string,
    private readonly queueSync: GroupSync,
    private readonly stateSync: GroupSync,
    private readonly dirHandles: FileHandle[],
    private readonly journal: Journal,
    private readonly opts: SpoolOptions,
  ) {
    super();
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? silent;
    this.queueDir = path.join(dir, 'queue');
    this.stateDir = path.join(dir, 'state');
    this.corruptDir = path.join(dir, 'corrupt');
    this.tmpDir = path.join(dir, 'tmp');
    this.space = new SpaceMonitor({
      dir,
      floor: opts.floor ?? (() => NO_FLOOR),
      metrics: opts.metrics,
      log: this.log,
      ...(opts.readSpace ? { read: opts.readSpace } : {}),
    });
  }

  /** Creates the directories, takes the lock, sweeps half-written entries, sets damaged ones aside, builds the index. */
  static async open(opts: SpoolOptions): Promise<Spool> {
    const dir = path.resolve(opts.dir);
    await makeDirsDurably(dir, ['queue', 'state', 'corrupt', 'tmp', 'journal']);
    await takeLock(dir);
    const queueHandle = await fs.open(path.join(dir, 'queue'), 'r');
    const stateHandle = await fs.open(path.join(dir, 'state'), 'r').catch(async (err: unknown) => {
      await queueHandle.close();
      throw err;
    });
    const rolled: { hook?: () => void } = {};
    const { journal, left } = await Journal.open(path.join(dir, 'journal'), {
      now: opts.now ?? Date.now,
      ...(opts.journalSegmentBytes ? { segmentBytes: opts.journalSegmentBytes } : {}),
      onRoll: () => rolled.hook?.(),
    });
    const spool = new Spool(
      dir,
      new GroupSync(queueHandle),
      new GroupSync(stateHandle),
      [queueHandle, stateHandle],
      journal,
      opts,
    );
    rolled.hook = () => spool.moveOldOutOfJournal();
    await spool.recover(left);
    await journal.start(left);
    await spool.space.start();
    opts.metrics?.setSpoolCollector(() => spool.collectMetrics());
    return spool;
  }

  /** Why new mail is refused now (free-space floor), or undefined; `incoming`: a declared size. */
  spaceProblem(incoming = 0): string | undefined {
    return this.space.problem(incoming);
  }

  /**
   * Writes envelope + body durably and returns the queue ID. Resolves only when the message is on disk
   * and fsynced; rejects (leaving nothing behind) when the body iterable throws or the disk fails. With
   * the file system below its free-space floor — before the message, or once it is written — or full
   * (ENOSPC, EDQUOT), it rejects with SpoolFullError; the client is told 452 4.3.1, never 250.
   */
  async accept(
    envelope: Envelope,
    body: AsyncIterable<Uint8Array | string>,
    opts: AcceptOptions = {},
  ): Promise<{ id: string; size: number }> {
    if (this.closed) throw new Error('spool is closed');
    const refused = opts.useReserve ? undefined : this.space.problem();
    if (refused) throw new SpoolFullError(refused);
    const id = newMessageId(this.now());
    const file = path.join(this.queueDir, id);
    const header = encodeHeader(envelope);
    // The body is read up to WRITE_CHUNK before the file is created: most mail ends within it and is
    // then written whole (writeSmall). Only a longer one is streamed (writeLarge).
    const chunks = body[Symbol.asyncIterator]();
    const first: Buffer[] = [];
    let size = 0;
    let crc = 0;
    let more = true;
    while (size < WRITE_CHUNK) {
      const next = await chunks.next();
      if (next.done) {
        more = false;
        break;
      }
      const buf = asBuffer(next.value);
      size += buf.length;
      crc = crc32(buf, crc);
      first.push(buf);
    }
    if (!more) return this.acceptSmall(id, envelope, header, first, size, crc, opts);
    ({ size, crc } = await this.writeLarge(file, header, first, size, crc, chunks, opts));
    try {
      await this.queueSync.sync();
    } catch (err) {
      // The file exists but its directory entry may not be durable: we cannot say 250, and must not
      // leave a message behind that the client will resend. Remove it and report the failure.
      await fs.unlink(file).catch(() => undefined);
      throw err;
    }
    const entry: SpoolEntry = { id, envelope, size, bodyOffset: header.length, crc };
    this.index.set(id, entry);
    this.emit('accepted', entry);
    return { id, size };
  }

  /**
   * A message that fits in one write goes to the journal: one positioned write and a share of one
   * group-committed fdatasync, no file of its own until its first attempt ends without removing it.
   * The free-space floor is checked with its size before the write.
   */
  private async acceptSmall(
    id: string,
    envelope: Envelope,
    header: Buffer,
    body: Buffer[],
    size: number,
    crc: number,
    opts: AcceptOptions,
  ): Promise<{ id: string; size: number }> {
    const pieces = [header, ...body, encodeTrailer(size, crc)];
    const length = pieces.reduce((n, b) => n + b.length, 0);
    await this.checkSpaceAfter(pieces, opts);
    let place: JournalPlace;
    try {
      place = await this.journal.append(id, pieces, length);
    } catch (err) {
      throw await this.failedOpen(err);
    }
    const entry: SpoolEntry = { id, envelope, size, bodyOffset: header.length, crc };
    this.index.set(id, entry);
    this.journaled.set(id, place);
    if (size > 0 && this.bodyCacheBytes + size <= BODY_CACHE_BYTES) {
      this.bodyCache.set(id, body.length === 1 ? body[0]! : Buffer.concat(body, size));
      this.bodyCacheBytes += size;
    }
    this.emit('accepted', entry);
    return { id, size };
  }

  /**
   * Moves a journaled message into queue/<id> (its attempt ended without removing it, or the relay
   * stops): the file is durable before the journal forgets the record, so a crash in between leaves
   * two copies, and recovery keeps the one in queue/.
   */
  private leaveJournal(id: string): Promise<void> {
    // one move per message: a second caller (close() during a deferral) waits for the first
    let moving = this.leaving.get(id);
    if (!moving) {
      moving = this.moveOutOfJournal(id).finally(() => this.leaving.delete(id));
      this.leaving.set(id, moving);
    }
    return moving;
  }

  /**
   * A journaled message's bytes as queue/<id>, fdatasynced (the caller syncs queue/). A file already
   * there is one an earlier, failed move completed: writeSmall removes what it could not finish.
   */
  private async copyToQueue(id: string, bytes: Buffer): Promise<void> {
    await this.writeSmall(path.join(this.queueDir, id), [bytes], { useReserve: true }).catch(
      (err: NodeJS.ErrnoException) => {
        if (err.code !== 'EEXIST') throw err;
      },
    );
  }

  /** Journaled messages whose segment filled long ago (a first attempt that hangs) go to queue/. */
  private moveOldOutOfJournal(): void {
    for (const [id, place] of this.journaled)
      if (this.journal.isOld(place))
        this.leaveJournal(id).catch((err: unknown) =>
          this.log.warn({ id, err: String(err) }, 'could not move an old message out of the journal'),
        );
  }

  private async moveOutOfJournal(id: string): Promise<void> {
    const place = this.journaled.get(id);
    if (!place) return;
    await this.copyToQueue(id, await this.journal.read(place));
    await this.queueSync.sync();
    if (this.journaled.get(id) !== place) return;
    this.journaled.delete(id);
    try {
      this.journal.markDone(place);
    } catch (err) {
      // the record stays live: its segment is kept until the next start, which keeps queue/<id>
      this.log.warn({ id, err: String(err) }, 'could not mark a journal record done; kept until restart');
    }
  }

  /**
   * A message that fits in one write: two threadpool round trips instead of four. The file is created
   * and fdatasynced there (both wait for the file system's journal or the device); the write into the
   * page cache and the close are made here, on the event loop, where they cost less than a round trip
   * each (ADR 41).
   */
  private async writeSmall(file: string, pieces: Buffer[], opts: AcceptOptions): Promise<void> {
    let fd: number;
    try {
      fd = await openExclusive(file);
    } catch (err) {
      throw await this.failedOpen(err);
    }
    try {
      writeAllSync(fd, pieces, null);
      await this.checkSpaceAfter(pieces, opts);
      await fdatasync(fd);
    } catch (err) {
      closeQuietly(fd);
      throw await this.failedWrite(file, err);
    }
    closeSync(fd);
  }

  /** A longer message, streamed to the file in chunks of WRITE_CHUNK through the threadpool. */
  private async writeLarge(
    file: string,
    header: Buffer,
    first: Buffer[],
    firstSize: number,
    firstCrc: number,
    chunks: AsyncIterator<Uint8Array | string>,
    opts: AcceptOptions,
  ): Promise<{ size: number; crc: number }> {
    let fh: FileHandle;
    try {
      fh = await fs.open(file, 'wx', 0o600);
    } catch (err) {
      await chunks.return?.().catch(() => undefined); // the open error is the one to report
      throw await this.failedOpen(err);
    }
    let size = firstSize;
    let crc = firstCrc;
    try {
      await fh.writev([header, ...first]);
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for (let next = await chunks.next(); !next.done; next = await chunks.next()) {
        const buf = asBuffer(next.value);
        size += buf.length;
        crc = crc32(buf, crc);
        pending.push(buf);
        pendingBytes += buf.length;
        if (pendingBytes >= WRITE_CHUNK) {
          await fh.writev(pending);
          pending = [];
          pendingBytes = 0;
        }
      }
      const trailer = encodeTrailer(size, crc);
      pending.push(trailer);
      await fh.writev(pending);
      await this.checkSpaceAfter([header, trailer], opts, size);
      await fh.datasync();
      await fh.close();
    } catch (err) {
      await chunks.return?.().catch(() => undefined);
      await fh.close().catch(() => undefined);
      throw await this.failedWrite(file, err);
    }
    return { size, crc };
  }

  /** Re-checked with this message on disk: a burst of large messages must not eat the reserve. */
  private async checkSpaceAfter(pieces: Buffer[], opts: AcceptOptions, extra = 0): Promise<void> {
    if (opts.useReserve) return;
    const after = await this.space.afterWrite(pieces.reduce((n, b) => n + b.length, extra));
    if (after.low) throw new SpoolFullError(after.reason);
  }

  /** The error to throw when the message file could not be created (out of inodes: readiness follows). */
  private async failedOpen(err: unknown): Promise<unknown> {
    const thrown = this.outOfSpace(err);
    if (thrown instanceof SpoolFullError) await this.space.refresh();
    return thrown;
  }

  /** Removes the file of a message that failed while written; the error to throw. */
  private async failedWrite(file: string, err: unknown): Promise<unknown> {
    await fs.unlink(file).catch(() => undefined);
    const thrown = this.outOfSpace(err);
    // the verdict now says what is left without this message (the next one may fit)
    if (thrown instanceof SpoolFullError) await this.space.refresh();
    return thrown;
  }

  /** ENOSPC/EDQUOT as SpoolFullError. */
  private outOfSpace(err: unknown): unknown {
    if (!isOutOfSpace(err)) return err;
    return new SpoolFullError(
      `no space left on the spool file system (${(err as NodeJS.ErrnoException).code})`,
      { cause: err },
    );
  }

  get(id: string): SpoolEntry | undefined {
    return this.index.get(id);
  }

  entries(): IterableIterator<SpoolEntry> {
    return this.index.values();
  }

  get count(): number {
    return this.index.size;
  }

  /**
   * Streams the body of a queued message. The stream errors with CorruptEntryError if the bytes on disk
   * do not match the end record; the caller should then quarantine() the entry.
   */
  readBody(id: string): Readable {
    const entry = this.index.get(id);
    if (!entry) throw new Error(`no message ${id} in the spool`);
    const file = path.join(this.queueDir, id);
    if (entry.size === 0) return Readable.from([]);
    const cached = this.bodyCache.get(id);
    if (cached) return Readable.from([cached], { objectMode: false });
    // journaled: at most one chunk over SMALL_BODY, read whole like the small ones
    if (entry.size <= SMALL_BODY || this.journaled.has(id))
      return new SmallBody(entry, () => this.readSmallBody(entry));
    const source = createReadStream(file, {
      start: entry.bodyOffset,
      end: entry.bodyOffset + entry.size - 1,
    });
    let crc = 0;
    let seen = 0;
    const check = new Transform({
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        crc = crc32(chunk, crc);
        seen += chunk.length;
        cb(null, chunk);
      },
      flush(cb: TransformCallback) {
        if (seen !== entry.size || crc >>> 0 !== entry.crc)
          cb(new CorruptEntryError(id, 'body checksum mismatch'));
        else cb();
      },
    });
    source.on('error', (err) => check.destroy(err));
    return source.pipe(check);
  }

  /** A small body, from wherever the message is when the read starts (it may leave the journal). */
  private async readSmallBody(entry: SpoolEntry): Promise<Buffer> {
    const place = this.journaled.get(entry.id);
    if (!place) return readAt(path.join(this.queueDir, entry.id), entry.bodyOffset, entry.size);
    const bytes = await this.journal.read(place);
    return bytes.subarray(entry.bodyOffset, entry.bodyOffset + entry.size);
  }

  /**
   * Records delivery progress durably: the new state is written to tmp/, fdatasynced, renamed over
   * state/<id>, and state/ is fsynced (group commit) before this resolves.
   */
  async saveState(id: string, state: DeliveryState): Promise<void> {
    const entry = this.index.get(id);
    if (!entry) throw new Error(`no message ${id} in the spool`);
    await this.leaveJournal(id);
    const tmp = path.join(this.tmpDir, `${id}.${randomBytes(4).toString('hex')}`);
    const fh = await fs.open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify(state));
      await fh.datasync();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fs.unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fh.close();
    await fs.rename(tmp, path.join(this.stateDir, id));
    // The rename is durable only once state/ is: without this, a power cut can bring the old state back.
    await this.stateSync.sync();
    entry.state = state;
    // an attempt has ended without removing the message: later attempts read the file
    this.forgetBody(id);
  }

  private forgetBody(id: string): void {
    const cached = this.bodyCache.get(id);
    if (!cached) return;
    this.bodyCache.delete(id);
    this.bodyCacheBytes -= cached.length;
  }

  /**
   * Removes a message that was delivered, bounced or handed off. The file goes first: when it cannot be
   * unlinked (read-only or failing volume, an immutable file) this rejects and the message stays in the
   * index, queued and counted, so the caller can try again; the relay never forgets a file that is
   * still there. A state file left behind is only logged: recovery sweeps state without a message.
   */
  async remove(id: string): Promise<void> {
    const entry = this.index.get(id);
    if (!entry) return;
    const place = this.journaled.get(id);
    if (place) {
      this.journal.markDone(place); // throws when it cannot: the message stays, as with a failed unlink
      this.journaled.delete(id);
      this.index.delete(id);
      this.forgetBody(id);
      return;
    }
    await fs.unlink(path.join(this.queueDir, id)).catch(ignoreMissing);
    if (this.index.get(id) !== entry) return; // a concurrent remove() finished first
    this.index.delete(id);
    this.forgetBody(id);
    this.queueSync.soon(REMOVAL_SYNC_MS);
    // state/<id> exists only once saveState() wrote it or recovery read it (entry.state is set then).
    // Most mail is delivered at its first attempt and never has one: no unlink to fail with ENOENT.
    if (entry.state)
      await fs.unlink(path.join(this.stateDir, id)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          this.log.warn({ id, err: String(err) }, 'could not remove delivery state; swept at next start');
      });
  }

  /** Sets a damaged message aside in corrupt/ with a note saying why. It is never deleted by the relay. */
  async quarantine(id: string, reason: string): Promise<void> {
    this.index.delete(id);
    this.forgetBody(id);
    const place = this.journaled.get(id);
    if (!place) return this.setAside(id, reason);
    this.journaled.delete(id);
    await this.setAsideBytes(id, await this.journal.read(place), reason);
    this.journal.markDone(place);
  }

  /** true when a file can be created and fsynced in the spool (readiness). */
  async probeWritable(): Promise<boolean> {
    if (this.closed) return false;
    const probe = path.join(this.tmpDir, `probe.${process.pid}.${randomBytes(4).toString('hex')}`);
    try {
      const fh = await fs.open(probe, 'wx', 0o600);
      try {
        await fh.write('ok');
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await fs.unlink(probe);
      return true;
    } catch {
      await fs.unlink(probe).catch(() => undefined);
      return false;
    }
  }

  /** Counts and bytes by state, and the oldest message's age (for metrics and the queue tools). */
  stats(activeIds: ReadonlySet<string> = new Set()) {
    const now = this.now();
    const by = {
      ready: { messages: 0, bytes: 0 },
      deferred: { messages: 0, bytes: 0 },
      active: { messages: 0, bytes: 0 },
    };
    let oldest = now;
    for (const e of this.index.values()) {
      const state = activeIds.has(e.id)
        ? 'active'
        : (e.state?.nextAttemptAt ?? 0) > now
          ? 'deferred'
          : 'ready';
      by[state].messages++;
      by[state].bytes += e.size;
      oldest = Math.min(oldest, e.envelope.receivedAt);
    }
    return { ...by, corrupt: this.corruptCount, oldestAgeSeconds: Math.max(0, (now - oldest) / 1000) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // what is still in the journal moves to queue/: the journal never outlives the process that wrote it
    for (const id of [...this.journaled.keys()])
      await this.leaveJournal(id).catch((err: unknown) =>
        this.log.error(
          { id, err: String(err) },
          'could not move a message out of the journal; it is recovered at the next start',
        ),
      );
    await this.journal.close();
    this.space.stop();
    this.queueSync.cancelSoon();
    await this.queueSync.sync().catch(() => undefined); // removals made durable before we let go
    for (const h of this.dirHandles) await h.close().catch(() => undefined);
    await fs.unlink(path.join(this.dir, 'lock')).catch(() => undefined);
    openDirs.delete(this.dir);
  }

  private collectMetrics(): void {
    const m = this.opts.metrics;
    if (!m) return;
    const s = this.stats(this.activeIds);
    for (const state of ['ready', 'deferred', 'active'] as const) {
      m.spoolMessages.set({ state }, s[state].messages);
      m.spoolBytes.set({ state }, s[state].bytes);
    }
    m.spoolMessages.set({ state: 'corrupt' }, s.corrupt);
    m.oldestMessageAge.set(s.oldestAgeSeconds);
  }

  private async recover(left: readonly string[]): Promise<void> {
    for (const name of await fs.readdir(this.tmpDir))
      await fs.rm(path.join(this.tmpDir, name), { force: true });
    for (const name of await fs.readdir(this.queueDir)) await this.recoverMessage(name);
    for (const name of left) await this.recoverSegment(await this.journal.readLeft(name));
    // what came out of the journal is durable in queue/ before start() deletes the segments
    await this.queueSync.sync();
    for (const name of await fs.readdir(this.stateDir)) await this.recoverState(name);
    this.corruptCount = (await fs.readdir(this.corruptDir)).filter((n) => !n.endsWith('.reason')).length;
    this.log.info(
      { dir: this.dir, messages: this.index.size, corrupt: this.corruptCount },
      'spool recovered',
    );
  }

  private async recoverMessage(name: string): Promise<void> {
    const file = path.join(this.queueDir, name);
    if (!ID_PATTERN.test(name)) {
      await this.setAside(name, 'file name is not a queue ID');
      return;
    }
    const result = await readEnds(file);
    if (result.kind === 'half-written') {
      // Never acknowledged: the client got no 250 and will resend.
      this.log.warn({ id: name }, 'removing half-written spool file (never acknowledged)');
      this.opts.metrics?.spoolSwept.inc({ kind: 'half_written' });
      await fs.unlink(file);
      return;
    }
    if (result.kind === 'corrupt') {
      await this.setAside(name, result.reason);
      return;
    }
    this.index.set(name, { id: name, ...result.entry });
  }

  /**
   * Moves the live records of a segment an earlier run left into queue/ (a crash, or a close that could
   * not move them): done ones were delivered or already moved; one whose queue file survived is there.
   */
  private async recoverSegment({ name, bytes, parsed, done }: LeftSegment): Promise<void> {
    const at = (r: { offset: number; length: number }) => bytes.subarray(r.offset, r.offset + r.length);
    for (const record of parsed.records) {
      if (done.has(record.id) || this.index.has(record.id)) continue;
      if (record.kind === 'corrupt') await this.setAsideBytes(record.id, at(record), record.reason);
      else await this.recoverRecord(record, at(record));
    }
    for (const d of parsed.damaged)
      await this.setAsideBytes(
        `${name}.${d.offset}`,
        at(d),
        `journal ${name}: bytes without a readable record frame`,
      );
    if (parsed.tornAt !== undefined) {
      // Never acknowledged: its write or its fdatasync had not completed, and the client got no 250.
      this.log.warn(
        { segment: name, offset: parsed.tornAt },
        'dropping half-written journal record (never acknowledged)',
      );
      this.opts.metrics?.spoolSwept.inc({ kind: 'half_written' });
    }
  }

  private async recoverRecord(record: Extract<JournalRecord, { kind: 'ok' }>, bytes: Buffer): Promise<void> {
    const { id } = record;
    await this.copyToQueue(id, bytes);
    this.index.set(id, {
      id,
      envelope: record.envelope,
      size: record.size,
      bodyOffset: record.bodyOffset,
      crc: record.crc,
    });
  }

  /** A damaged journal record (or stretch), kept in corrupt/ as a file of its own with a note saying why. */
  private async setAsideBytes(name: string, bytes: Buffer, reason: string): Promise<void> {
    const fh = await fs.open(path.join(this.corruptDir, name), 'w', 0o600);
    try {
      await fh.writeFile(bytes);
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await this.setAside(name, reason);
  }

  private async recoverState(name: string): Promise<void> {
    const file = path.join(this.stateDir, name);
    const entry = this.index.get(name);
    if (!entry) {
      await fs.rm(file, { force: true }); // the message was removed; its state was left behind by a crash
      return;
    }
    try {
      entry.state = parseDeliveryState(await fs.readFile(file, 'utf8'));
    } catch (err) {
      // Losing progress only means retrying recipients again (at-least-once), never losing mail.
      this.log.warn(
        { id: name, err: String(err) },
        'unreadable delivery state; the message will be retried in full',
      );
      await fs.rm(file, { force: true });
    }
  }

  private async setAside(id: string, reason: string): Promise<void> {
    this.log.error({ id, reason }, 'spool entry is damaged; moved to corrupt/');
    this.opts.metrics?.spoolSwept.inc({ kind: 'corrupt' });
    await fs.rename(path.join(this.queueDir, id), path.join(this.corruptDir, id)).catch(ignoreMissing);
    await fs.writeFile(
      path.join(this.corruptDir, `${id}.reason`),
      `${new Date(this.now()).toISOString()} ${reason}\n`,
    );
    await fs.rm(path.join(this.stateDir, id), { force: true });
    // durable in corrupt/ before anything that held it forgets it (a journal record is marked done next)
    await fsyncDir(this.corruptDir);
    this.corruptCount++;
  }
}

/**
 * A small body in one read, checked against its end record before any byte is handed on: one open, one
 * read, one close through fs's callback API, no file stream and no checking transform per message.
 */
class SmallBody extends Readable {
  private started = false;

  constructor(
    private readonly entry: SpoolEntry,
    private readonly load: () => Promise<Buffer>,
  ) {
    super();
  }

  override _read(): void {
    if (this.started) return;
    this.started = true;
    const { entry } = this;
    this.load().then(
      (buf) => {
        if (buf.length !== entry.size || crc32(buf) >>> 0 !== entry.crc)
          return this.destroy(new CorruptEntryError(entry.id, 'body checksum mismatch'));
        this.push(buf);
        this.push(null);
      },
      (err: Error) => this.destroy(err),
    );
  }
}

/** `length` bytes of `file` at `offset` (fewer when the file is shorter): one open, read and close. */
function readAt(file: string, offset: number, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    openCb(file, 'r', (err, fd) => {
      if (err) return reject(err);
      const buf = Buffer.allocUnsafe(length);
      readCb(fd, buf, 0, length, offset, (rerr, bytesRead) => {
        closeCb(fd, () => undefined);
        if (rerr) reject(rerr);
        else resolve(buf.subarray(0, bytesRead));
      });
    }),
  );
}

function asBuffer(chunk: Uint8Array | string): Buffer {
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
}

const CREATE_EXCLUSIVE = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL;

/** open(2) with O_CREAT|O_EXCL through the callback API: a bare fd, no FileHandle to close later. */
function openExclusive(file: string): Promise<number> {
  return new Promise((resolve, reject) =>
    openCb(file, CREATE_EXCLUSIVE, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasyncCb(fd, (err) => (err ? reject(err) : resolve())));
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // the write already failed; that is the error to report
  }
}

type Ends =
  | { kind: 'ok'; entry: Omit<SpoolEntry, 'id'> }
  | { kind: 'half-written' }
  | { kind: 'corrupt'; reason: string };

/** Reads a message file's header and end record without reading its body. */
async function readEnds(file: string): Promise<Ends> {
  const fh = await fs.open(file, 'r');
  try {
    const { size } = await fh.stat();
    const tail = Buffer.alloc(Math.min(TRAILER_LENGTH, size));
    await fh.read(tail, 0, tail.length, size - tail.length);
    const trailer = decodeTrailer(tail);
    if (!trailer) return { kind: 'half-written' };
    const head = Buffer.alloc(Math.min(MAX_HEADER_BYTES, size - TRAILER_LENGTH));
    await fh.read(head, 0, head.length, 0);
    const header = decodeHeader(head);
    if ('problem' in header) return { kind: 'corrupt', reason: header.problem };
    if (header.bodyOffset + trailer.bodyLength + TRAILER_LENGTH !== size) {
      return {
        kind: 'corrupt',
        reason: `end record says ${trailer.bodyLength} body bytes, file size disagrees`,
      };
    }
    return {
      kind: 'ok',
      entry: {
        envelope: header.envelope,
        size: trailer.bodyLength,
        bodyOffset: header.bodyOffset,
        crc: trailer.crc,
      },
    };
  } finally {
    await fh.close();
  }
}

/**
 * Creates `dir` and its `subdirs` (and missing ancestors) so that each one's directory entry is durable:
 * a directory exists after a power cut only once its parent was fsynced. The spool directory itself is
 * fsynced on every start, which also covers subdirectories a crashed earlier start created.
 */
async function makeDirsDurably(dir: string, subdirs: readonly string[]): Promise<void> {
  const created: string[] = [];
  const make = async (d: string): Promise<void> => {
    try {
      await fs.mkdir(d);
      created.push(d);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return;
      if (code !== 'ENOENT' || path.dirname(d) === d) throw err;
      await make(path.dirname(d));
      await make(d);
    }
  };
  await make(dir);
  for (const sub of subdirs) await make(path.join(dir, sub));
  const parents = new Set([dir, ...created.map((d) => path.dirname(d))]);
  for (const p of parents) await fsyncDir(p);
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Spool directories open in this process (the pid in a lock file cannot tell those apart). */
const openDirs = new Set<string>();

/** One relay per spool: a second one would sweep the first one's half-written files. */
async function takeLock(dir: string): Promise<void> {
  if (openDirs.has(dir)) throw new SpoolLockedError(`spool ${dir} is already open in this process`);
  const lock = path.join(dir, 'lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fs.writeFile(lock, `${process.pid}\n`, { flag: 'wx' });
      openDirs.add(dir);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await fs.readFile(lock, 'utf8').catch(() => '')).trim());
    if (pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new SpoolLockedError(
        `spool ${dir} is in use by process ${pid} (remove ${lock} if that is wrong)`,
      );
    }
    await fs.rm(lock, { force: true }); // stale: its owner is gone (or it is us, restarted as the same pid)
  }
  throw new SpoolLockedError(`could not take the spool lock ${lock}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
