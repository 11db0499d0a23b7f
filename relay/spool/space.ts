/**
 * The free-space floor of the spool's file system (KumoMTA's min_free_space / min_free_inodes).
 *
 * Below `spool.minFreeSpacePercent` of free space, or `spool.minFreeInodesPercent` of free inodes, the
 * relay refuses new mail (452 4.3.1 at MAIL and RCPT, and at the end of DATA when a message took the
 * space below the floor) and /readyz fails, so the Service sends new connections to other replicas.
 * Delivery goes on: removals free space, and bounces and delivery state may use the space below the
 * floor — that is what it is kept for. "Free" is what the relay may use (statfs f_bavail, without the
 * blocks ext4 keeps for root), as a share of the file system's size.
 *
 * spaceVerdict() is the decision, a plain function. SpaceMonitor reads statfs once a second (and at
 * the end of DATA when the estimate since the last reading comes near the floor), keeps the latest
 * verdict for the per-command checks, logs each change and sets the gauges:
 * spool_filesystem_free_bytes, _size_bytes, _free_ratio{resource}, spool_space_low.
 */
import fs from 'node:fs/promises';
import type { SpoolConfig } from '../config/schema.js';
import type { RelayMetrics } from '../metrics.js';

export interface SpaceReading {
  /** Bytes the relay may still write. */
  freeBytes: number;
  sizeBytes: number;
  freeInodes: number;
  /** 0 when the file system does not count inodes (btrfs, some network file systems). */
  inodes: number;
}

export type SpaceFloor = Pick<SpoolConfig, 'minFreeSpacePercent' | 'minFreeInodesPercent'>;

export interface SpaceVerdict {
  /** New mail must be refused. */
  low: boolean;
  /** Why, for /readyz and the log: names the figure and the setting. */
  reason?: string;
  freeRatio: number;
  freeInodesRatio: number;
}

/** A message could not be written because the spool's file system is full or below its floor. */
export class SpoolFullError extends Error {}

const SPACE_ERRORS = new Set(['ENOSPC', 'EDQUOT']);
/** Allocation unit assumed for the estimate in afterWrite (the common file system block). */
const BLOCK = 4096;

/** true for the errors a full file system (or quota) gives on open, write or fsync. */
export function isOutOfSpace(err: unknown): boolean {
  return SPACE_ERRORS.has((err as NodeJS.ErrnoException | undefined)?.code ?? '');
}

function pct(ratio: number): string {
  return `${(ratio * 100).toFixed(1)}%`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The verdict for `r`, with `incoming` more bytes written (a SIZE= declared at MAIL FROM). */
export function spaceVerdict(r: SpaceReading, floor: SpaceFloor, incoming = 0): SpaceVerdict {
  const free = Math.max(0, r.freeBytes - incoming);
  const freeRatio = r.sizeBytes > 0 ? free / r.sizeBytes : 1;
  const freeInodesRatio = r.inodes > 0 ? r.freeInodes / r.inodes : 1;
  const problems: string[] = [];
  if (floor.minFreeSpacePercent > 0 && freeRatio * 100 < floor.minFreeSpacePercent)
    problems.push(
      `spool file system low on space: ${pct(freeRatio)} free (${mib(free)} of ${mib(r.sizeBytes)})${incoming ? ` after the ${mib(incoming)} declared` : ''}, below spool.minFreeSpacePercent ${floor.minFreeSpacePercent}%`,
    );
  if (floor.minFreeInodesPercent > 0 && freeInodesRatio * 100 < floor.minFreeInodesPercent)
    problems.push(
      `spool file system low on inodes: ${pct(freeInodesRatio)} free (${r.freeInodes} of ${r.inodes}), below spool.minFreeInodesPercent ${floor.minFreeInodesPercent}%`,
    );
  return {
    low: problems.length > 0,
    ...(problems.length ? { reason: problems.join('; ') } : {}),
    freeRatio,
    freeInodesRatio,
  };
}

interface Log {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface SpaceMonitorOptions {
  dir: string;
  floor: () => SpaceFloor;
  metrics?: RelayMetrics;
  log: Log;
  /** statfs of the spool directory (a seam for unit tests). */
  read?: (dir: string) => Promise<SpaceReading>;
  intervalMs?: number;
}

export async function statSpace(dir: string): Promise<SpaceReading> {
  const s = await fs.statfs(dir);
  return {
    freeBytes: s.bavail * s.bsize,
    sizeBytes: s.blocks * s.bsize,
    freeInodes: s.ffree,
    inodes: s.files,
  };
}

export class SpaceMonitor {
  /** The latest verdict; not low until the first reading says so. */
  verdict: SpaceVerdict = { low: false, freeRatio: 1, freeInodesRatio: 1 };
  private last: SpaceReading | undefined;
  private timer: NodeJS.Timeout | undefined;
  private reading: Promise<SpaceVerdict> | undefined;
  private queued: Promise<SpaceVerdict> | undefined;
  /** Bytes and files written since the latest reading began (see afterWrite). */
  private writtenSince = 0;
  private filesSince = 0;
  private readonly read: (dir: string) => Promise<SpaceReading>;

  constructor(private readonly opts: SpaceMonitorOptions) {
    this.read = opts.read ?? statSpace;
  }

  /** Reads now and then every intervalMs. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Why new mail is refused now, from the latest reading (at most intervalMs old), or undefined. With
   * `incoming`, also when that many more bytes would take the file system below the floor.
   */
  problem(incoming = 0): string | undefined {
    if (incoming <= 0 || !this.last) return this.verdict.reason;
    return spaceVerdict(this.last, this.opts.floor(), incoming).reason;
  }

  /**
   * The verdict once `bytes` more were written (a message, before its fdatasync). Without a statfs when
   * the latest reading, less everything written since it began, still leaves that much above the floor:
   * most messages cost no system call here; near the floor each one gets a fresh reading.
   */
  afterWrite(bytes: number): Promise<SpaceVerdict> {
    // what a file costs on disk at most: whole blocks, plus one for its directory entry and state
    this.writtenSince += Math.ceil(bytes / BLOCK) * BLOCK + BLOCK;
    this.filesSince += 2;
    const r = this.last;
    const floor = this.opts.floor();
    if (floor.minFreeSpacePercent === 0 && floor.minFreeInodesPercent === 0)
      return Promise.resolve(this.verdict);
    if (r && !this.verdict.low) {
      const bytesLeft = r.freeBytes - this.writtenSince - (r.sizeBytes * floor.minFreeSpacePercent) / 100;
      const inodesLeft =
        r.inodes > 0 ? r.freeInodes - this.filesSince - (r.inodes * floor.minFreeInodesPercent) / 100 : 1;
      if (bytesLeft > 0 && inodesLeft > 0) return Promise.resolve(this.verdict);
    }
    return this.refresh();
  }

  /**
   * A verdict from a statfs that began after this call (concurrent callers share the next one, as in
   * GroupSync). A failed statfs keeps the last verdict.
   */
  refresh(): Promise<SpaceVerdict> {
    if (this.queued) return this.queued;
    if (!this.reading) return this.startReading();
    const after = () => {
      this.queued = undefined;
      return this.startReading();
    };
    this.queued = this.reading.then(after, after);
    return this.queued;
  }

  private startReading(): Promise<SpaceVerdict> {
    const p: Promise<SpaceVerdict> = this.readOnce().finally(() => {
      if (this.reading === p) this.reading = undefined;
    });
    this.reading = p;
    return p;
  }

  private async readOnce(): Promise<SpaceVerdict> {
    // what is written from now on may not be in this reading: counted against the next one
    this.writtenSince = 0;
    this.filesSince = 0;
    let r: SpaceReading;
    try {
      r = await this.read(this.opts.dir);
    } catch (err) {
      this.opts.log.error({ err: String(err) }, 'cannot read free space of the spool file system');
      return this.verdict;
    }
    const next = spaceVerdict(r, this.opts.floor());
    if (next.low && !this.verdict.low)
      this.opts.log.warn(
        { event: 'spool_space_low', reason: next.reason },
        'refusing new mail: spool file system below its free-space floor',
      );
    else if (!next.low && this.verdict.low)
      this.opts.log.info(
        { event: 'spool_space_ok', freeRatio: next.freeRatio, freeInodesRatio: next.freeInodesRatio },
        'accepting mail again: spool file system above its free-space floor',
      );
    this.verdict = next;
    this.last = r;
    const m = this.opts.metrics;
    if (m) {
      m.spoolFsFreeBytes.set(r.freeBytes);
      m.spoolFsSizeBytes.set(r.sizeBytes);
      m.spoolFsFreeRatio.set({ resource: 'space' }, next.freeRatio);
      m.spoolFsFreeRatio.set({ resource: 'inodes' }, next.freeInodesRatio);
      m.spoolSpaceLow.set(next.low ? 1 : 0);
    }
    return next;
  }
}
