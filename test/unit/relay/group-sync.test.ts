import type { FileHandle } from 'node:fs/promises';
import { GroupSync } from '../../../relay/spool/group-sync.js';

/** A directory handle whose fsyncs complete only when the test says so. */
function fakeHandle() {
  const pending: Array<() => void> = [];
  const handle = { sync: () => new Promise<void>((resolve) => pending.push(resolve)) };
  return { handle: handle as unknown as FileHandle, pending };
}

test('callers during a running fsync share the next one; nobody is told durable early', async () => {
  const { handle, pending } = fakeHandle();
  const g = new GroupSync(handle);
  const done: string[] = [];
  const first = g.sync().then(() => done.push('first'));
  // These arrive while the first fsync runs: their changes may not be covered by it.
  const later = [1, 2, 3].map((i) => g.sync().then(() => done.push(`later${i}`)));
  expect(pending).toHaveLength(1);

  pending.shift()!();
  await first;
  expect(done).toEqual(['first']);
  await Promise.resolve();
  expect(pending).toHaveLength(1); // one fsync for all three waiting callers

  pending.shift()!();
  await Promise.all(later);
  expect(done).toEqual(['first', 'later1', 'later2', 'later3']);
  expect(g.syncs).toBe(2);
});

test('a failed fsync fails its callers and the next caller gets a fresh one', async () => {
  let fail = true;
  const handle = {
    sync: () => (fail ? Promise.reject(new Error('EIO')) : Promise.resolve()),
  } as unknown as FileHandle;
  const g = new GroupSync(handle);
  await expect(g.sync()).rejects.toThrow('EIO');
  fail = false;
  await expect(g.sync()).resolves.toBeUndefined();
});

describe('soon(): removals ride on the next fsync', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('with no other caller, one fsync starts after the delay', async () => {
    const { handle, pending } = fakeHandle();
    const g = new GroupSync(handle);
    g.soon(200);
    g.soon(200); // a second removal in the window adds nothing
    jest.advanceTimersByTime(199);
    expect(pending).toHaveLength(0);
    jest.advanceTimersByTime(1);
    expect(pending).toHaveLength(1);
    pending.shift()!();
    await Promise.resolve();
    expect(g.syncs).toBe(1);
  });

  test('an fsync a caller asks for in the meantime covers it: no extra fsync', async () => {
    const { handle, pending } = fakeHandle();
    const g = new GroupSync(handle);
    g.soon(200);
    const accepted = g.sync(); // an accept() in the window
    pending.shift()!();
    await accepted;
    jest.advanceTimersByTime(200);
    expect(pending).toHaveLength(0);
    expect(g.syncs).toBe(1);
  });
});
