/**
 * The free-space floor: the verdict (pure), and the spool refusing client mail below it while bounces
 * may use the reserve (statfs faked at the spool's seam).
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { RelayMetrics } from '../../../relay/metrics.js';
import { SpoolFullError, spaceVerdict, type SpaceReading } from '../../../relay/spool/space.js';
import { Spool } from '../../../relay/spool/spool.js';

const MiB = 1024 * 1024;
const reading = (over: Partial<SpaceReading> = {}): SpaceReading => ({
  freeBytes: 50 * MiB,
  sizeBytes: 100 * MiB,
  freeInodes: 5000,
  inodes: 10000,
  ...over,
});
const floor = { minFreeSpacePercent: 10, minFreeInodesPercent: 10 };

describe('spaceVerdict', () => {
  test('above both floors: not low', () => {
    expect(spaceVerdict(reading(), floor)).toEqual({ low: false, freeRatio: 0.5, freeInodesRatio: 0.5 });
  });

  test('below the space floor: low, and the reason names the figures and the setting', () => {
    const v = spaceVerdict(reading({ freeBytes: 9.5 * MiB }), floor);
    expect(v.low).toBe(true);
    expect(v.reason).toBe(
      'spool file system low on space: 9.5% free (9.5 MiB of 100.0 MiB), below spool.minFreeSpacePercent 10%',
    );
  });

  test('exactly at the floor is not below it', () => {
    expect(spaceVerdict(reading({ freeBytes: 10 * MiB }), floor).low).toBe(false);
  });

  test('below the inode floor: low; a file system without an inode count never is', () => {
    expect(spaceVerdict(reading({ freeInodes: 999 }), floor).reason).toBe(
      'spool file system low on inodes: 10.0% free (999 of 10000), below spool.minFreeInodesPercent 10%',
    );
    expect(spaceVerdict(reading({ freeInodes: 0, inodes: 0 }), floor).low).toBe(false);
  });

  test('a declared size counts against what is free', () => {
    expect(spaceVerdict(reading({ freeBytes: 20 * MiB }), floor, 5 * MiB).low).toBe(false);
    expect(spaceVerdict(reading({ freeBytes: 20 * MiB }), floor, 15 * MiB).reason).toMatch(
      /5\.0% free \(5\.0 MiB of 100\.0 MiB\) after the 15\.0 MiB declared/,
    );
  });

  test('a floor of 0 is off', () => {
    const off = { minFreeSpacePercent: 0, minFreeInodesPercent: 0 };
    expect(spaceVerdict(reading({ freeBytes: 0, freeInodes: 0 }), off).low).toBe(false);
  });
});

describe('the spool below its floor', () => {
  let dir: string;
  let spool: Spool;
  let free: number;
  const metrics = new RelayMetrics({ defaultMetrics: false });
  const envelope = {
    mailFrom: 'app@example.com',
    recipients: ['a@example.org'],
    receivedAt: 1_700_000_000_000,
    listener: 'relay' as const,
    client: { address: '127.0.0.1' },
  };
  async function* body() {
    yield Buffer.from('Subject: x\r\n\r\nbody\r\n');
  }

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'space-'));
    free = 50 * MiB;
    spool = await Spool.open({
      dir,
      metrics,
      floor: () => floor,
      readSpace: () => Promise.resolve(reading({ freeBytes: free })),
    });
  });
  afterEach(async () => {
    await spool.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  test('refuses client mail with SpoolFullError and leaves no file; a bounce may use the reserve', async () => {
    free = 5 * MiB;
    await spool.space.refresh();
    expect(spool.spaceProblem()).toMatch(/low on space/);
    await expect(spool.accept(envelope, body())).rejects.toBeInstanceOf(SpoolFullError);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    const bounce = await spool.accept({ ...envelope, mailFrom: '' }, body(), { useReserve: true });
    expect(spool.get(bounce.id)).toBeDefined();
    expect((await metrics.spoolSpaceLow.get()).values[0]!.value).toBe(1);
  });

  test('re-checks once the message is written: the one that crosses the floor is refused and removed', async () => {
    let reads = 0;
    await spool.close();
    spool = await Spool.open({
      dir,
      floor: () => floor,
      // just above the floor before the message; below it once the message is on disk
      readSpace: () => Promise.resolve(reading({ freeBytes: ++reads > 1 ? 9 * MiB : 10 * MiB + 4096 })),
    });
    expect(spool.spaceProblem()).toBeUndefined();
    await expect(spool.accept(envelope, body())).rejects.toThrow(/low on space/);
    expect(await fs.readdir(path.join(dir, 'queue'))).toEqual([]);
    expect(spool.count).toBe(0);
  });

  test('far above the floor a message costs no statfs of its own', async () => {
    let reads = 0;
    await spool.close();
    spool = await Spool.open({
      dir,
      floor: () => floor,
      readSpace: () => (reads++, Promise.resolve(reading())),
    });
    const before = reads;
    for (let i = 0; i < 5; i++) await spool.accept(envelope, body());
    expect(reads - before).toBeLessThanOrEqual(1); // at most the once-a-second poll
    expect(spool.count).toBe(5);
  });
});
