/* eslint-disable @typescript-eslint/no-explicit-any -- inspects written JSON */
/**
 * What keeps a large fleet quiet: Events aggregated the way client-go records them, coalesced adds to the
 * work queue, and DNS rechecks that run on their own, bounded, and never hold up a reconcile.
 */
import { DnsChecker } from '../../../operator/maildomain/dns-checker.js';
import type { ExpectedRecord, TxtResult } from '../../../operator/maildomain/dns.js';
import { ApiEventRecorder } from '../../../operator/runtime/events.js';
import { ApiError, type KubeObject } from '../../../operator/runtime/kube.js';
import { silentLogger } from '../../../operator/runtime/logger.js';
import { WorkQueue } from '../../../operator/runtime/workqueue.js';
import { defaultControllerRateLimiter } from '../../../operator/runtime/ratelimit.js';
import { FakeClock } from '../../helpers/fake-clock.js';
import { FakeApi } from './fake-api.js';

const relay: KubeObject = {
  apiVersion: 'mailfleet.dev/v1alpha1',
  kind: 'SmtpRelay',
  metadata: { name: 'mail', namespace: 'apps', uid: 'u1' },
};
const flush = () => new Promise((r) => setImmediate(r));

describe('Events', () => {
  it('a repeated Event is one Event with a count, not a new one each time', async () => {
    const api = new FakeApi();
    const clock = new FakeClock();
    const rec = new ApiEventRecorder(api, clock, silentLogger);
    for (let i = 0; i < 3; i++) {
      rec.record(relay, 'Warning', 'Forbidden', 'cannot patch statefulsets');
      clock.advance(1000);
    }
    await flush();
    expect(api.writes.map((w) => w.split(' ')[0])).toEqual(['create', 'patch', 'patch']);
    const events = [...api.objects.values()].filter((o) => o.kind === 'Event') as any[];
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      count: 3,
      reason: 'Forbidden',
      firstTimestamp: '2025-01-01T00:00:00Z',
    });
    expect(events[0].lastTimestamp).toBe('2025-01-01T00:00:02Z');
  });

  it('more than 10 similar Events of an object within 10 minutes are combined', async () => {
    const api = new FakeApi();
    const rec = new ApiEventRecorder(api, new FakeClock(), silentLogger);
    for (let i = 0; i < 14; i++) rec.record(relay, 'Warning', 'DrainFailed', `pod mail-1: attempt ${i}`);
    await flush();
    const events = [...api.objects.values()].filter((o) => o.kind === 'Event') as any[];
    expect(events).toHaveLength(11);
    expect(events.find((e) => e.message.startsWith('(combined from similar events)'))).toMatchObject({
      count: 4,
      message: '(combined from similar events): pod mail-1: attempt 13',
    });
  });

  it('an expired Event is recorded anew', async () => {
    const api = new FakeApi();
    const rec = new ApiEventRecorder(api, new FakeClock(), silentLogger);
    rec.record(relay, 'Normal', 'Ready', 'Ready=True');
    await flush();
    api.objects.clear();
    api.mergePatch = () => Promise.reject(new ApiError(404, 'NotFound', 'gone'));
    rec.record(relay, 'Normal', 'Ready', 'Ready=True');
    await flush();
    expect([...api.objects.values()].filter((o) => o.kind === 'Event')).toHaveLength(1);
  });
});

describe('coalesced adds', () => {
  it('a burst adds the key once after it went quiet, and at the latest maxMs after its start', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue(clock, defaultControllerRateLimiter(clock));
    for (let i = 0; i < 5; i++) {
      q.addCoalesced('apps/mail', 2000, 30_000);
      clock.advance(1000);
    }
    expect(q.len()).toBe(0);
    clock.advance(1000);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('apps/mail');
    q.done('apps/mail');
    // A burst that never goes quiet still gets through after maxMs.
    for (let i = 0; i < 40; i++) {
      q.addCoalesced('apps/mail', 2000, 30_000);
      clock.advance(1000);
    }
    expect(q.len()).toBe(1);
  });
});

describe('DNS rechecks', () => {
  const expected = (d: string): ExpectedRecord[] => [
    { purpose: 'SPF', type: 'TXT', name: d, value: 'v=spf1 -all' },
    { purpose: 'DMARC', type: 'TXT', name: `_dmarc.${d}`, value: 'v=DMARC1; p=none' },
  ];

  it('never make the caller wait, run at most `concurrency` lookups at once, and say only what changed', async () => {
    const clock = new FakeClock();
    const pending: Array<(r: TxtResult) => void> = [];
    let most = 0;
    const changed: string[] = [];
    const checker = new DnsChecker({
      clock,
      intervalMs: 300_000,
      concurrency: 3,
      random: () => 0.5,
      onChange: (k) => changed.push(k),
      lookup: {
        txt: () =>
          new Promise<TxtResult>((resolve) => {
            pending.push(resolve);
            most = Math.max(most, pending.length);
          }),
      },
    });
    // A resolver that does not answer: the reconcile gets "not looked up yet" at once.
    for (let i = 0; i < 10; i++)
      expect(checker.current(`apps/d${i}`, expected(`d${i}.test`))).toBeUndefined();
    await flush();
    expect(pending).toHaveLength(3);
    while (pending.length) {
      pending.shift()!([]);
      await flush();
    }
    await checker.idle();
    expect(most).toBe(3);
    expect(changed.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `apps/d${i}`).sort());
    expect(checker.current('apps/d0', expected('d0.test'))?.records.every((r) => !r.found)).toBe(true);

    // The next round (on schedule, with jitter) finds the same: nobody is re-queued.
    changed.length = 0;
    clock.advance(300_000);
    await flush();
    while (pending.length) {
      pending.shift()!([]);
      await flush();
    }
    await checker.idle();
    expect(changed).toEqual([]);
    checker.stop();
  });
});
