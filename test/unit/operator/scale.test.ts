import { planScale, podOrdinal, type PodView } from '../../../operator/smtprelay/scale.js';
import { podAdminAddress } from '../../../operator/smtprelay/drain-client.js';
import { peerAddresses } from '../../../operator/smtprelay/drain.js';
import { relay } from './fixtures.js';

const NOW = Date.parse('2025-01-01T12:00:00Z');
const pod = (ordinal: number, over: Partial<PodView> = {}): PodView => ({
  name: `mail-${ordinal}`,
  ordinal,
  address: `10.0.0.${ordinal}:9091`,
  ...over,
});
const base = { nowMs: NOW, drainTimeoutMs: 600_000, deleting: false, statefulSetName: 'mail' };

describe('planScale', () => {
  it('scales up or creates at once', () => {
    expect(planScale({ ...base, desired: 3, current: undefined, pods: [] })).toMatchObject({
      statefulSetReplicas: 3,
      startDrain: [],
      waiting: false,
    });
    expect(planScale({ ...base, desired: 3, current: 1, pods: [pod(0)] })).toMatchObject({
      statefulSetReplicas: 3,
      draining: [],
    });
  });

  it('starts draining the top ordinals and keeps the StatefulSet size meanwhile', () => {
    const p = planScale({
      ...base,
      desired: 1,
      current: 3,
      pods: [
        pod(0),
        pod(1, { drain: { state: 'idle', queued: 4 } }),
        pod(2, { drain: { state: 'idle', queued: 0 } }),
      ],
    });
    expect(p).toMatchObject({
      statefulSetReplicas: 3,
      startDrain: ['mail-1', 'mail-2'],
      draining: ['mail-1', 'mail-2'],
      waiting: true,
      drained: false,
      problems: [],
    });
  });

  it('waits while draining and shrinks only when every pod reports drained with an empty queue', () => {
    const draining = planScale({
      ...base,
      desired: 1,
      current: 3,
      pods: [
        pod(0),
        pod(1, { drain: { state: 'drained', queued: 0 } }),
        pod(2, { drain: { state: 'draining', queued: 2 } }),
      ],
    });
    expect(draining).toMatchObject({ statefulSetReplicas: 3, startDrain: [], waiting: true });
    const done = planScale({
      ...base,
      desired: 1,
      current: 3,
      pods: [
        pod(0),
        pod(1, { drain: { state: 'drained', queued: 0 } }),
        pod(2, { drain: { state: 'drained', queued: 0 } }),
      ],
    });
    expect(done).toMatchObject({ statefulSetReplicas: 1, drained: true, waiting: false });
  });

  it('never shrinks past a pod that is unreachable, failing or still holding mail', () => {
    const unreachable = planScale({
      ...base,
      desired: 1,
      current: 2,
      pods: [pod(0), pod(1, { address: undefined })],
    });
    expect(unreachable.statefulSetReplicas).toBe(2);
    expect(unreachable.problems[0]!.reason).toBe('DrainPodUnreachable');
    expect(unreachable.draining).toEqual(['mail-1']);
    const missing = planScale({ ...base, desired: 1, current: 2, pods: [pod(0)] });
    expect(missing.statefulSetReplicas).toBe(2);
    const failing = planScale({
      ...base,
      desired: 1,
      current: 2,
      pods: [pod(0), pod(1, { drain: { error: 'connect ECONNREFUSED' } })],
    });
    expect(failing).toMatchObject({
      statefulSetReplicas: 2,
      problems: [{ reason: 'DrainFailed', message: 'draining pod mail-1 failed: connect ECONNREFUSED' }],
    });
    const leftover = planScale({
      ...base,
      desired: 1,
      current: 2,
      pods: [pod(0), pod(1, { drain: { state: 'drained', queued: 3 }, drainStartedAt: NOW - 60_000 })],
    });
    expect(leftover).toMatchObject({ statefulSetReplicas: 2, startDrain: ['mail-1'], problems: [] });
  });

  it('names a pod whose drain failed and its cause, and asks it to drain again', () => {
    const p = planScale({
      ...base,
      desired: 1,
      current: 2,
      pods: [
        pod(0),
        pod(1, {
          drainStartedAt: NOW - 700_000,
          drain: { state: 'failed', queued: 7, error: 'handoff is not configured' },
        }),
      ],
    });
    expect(p).toMatchObject({ statefulSetReplicas: 2, drained: false, startDrain: ['mail-1'] });
    expect(p.problems).toEqual([
      {
        reason: 'DrainFailed',
        message:
          'pod mail-1 reports that its drain failed: handoff is not configured (7 message(s) queued); asking it to drain again',
      },
    ]);
  });

  it('reports a drain running past its timeout as stuck, still without shrinking', () => {
    const p = planScale({
      ...base,
      desired: 0,
      current: 1,
      pods: [pod(0, { drain: { state: 'draining', queued: 7 }, drainStartedAt: NOW - 700_000 })],
    });
    expect(p.statefulSetReplicas).toBe(1);
    expect(p.problems[0]).toMatchObject({ reason: 'DrainStuck' });
    expect(p.problems[0]!.message).toContain('7 queued message(s) after 700s');
  });

  it('shrinks at once when the user opted out of draining', () => {
    const p = planScale({
      ...base,
      skipDrain: true,
      desired: 1,
      current: 3,
      pods: [pod(0), pod(1, { address: undefined })],
    });
    expect(p).toMatchObject({ statefulSetReplicas: 1, startDrain: [], draining: [], problems: [] });
  });

  it('drains every pod on deletion', () => {
    const p = planScale({
      ...base,
      deleting: true,
      desired: 2,
      current: 2,
      pods: [
        pod(0, { drain: { state: 'drained', queued: 0 } }),
        pod(1, { drain: { state: 'idle', queued: 0 } }),
      ],
    });
    expect(p).toMatchObject({ startDrain: ['mail-1'], drained: false });
    const done = planScale({
      ...base,
      deleting: true,
      desired: 2,
      current: 2,
      pods: [
        pod(0, { drain: { state: 'drained', queued: 0 } }),
        pod(1, { drain: { state: 'drained', queued: 0 } }),
      ],
    });
    expect(done.drained).toBe(true);
  });

  it('restarts a pod that was drained for a scale-down that got reverted', () => {
    const p = planScale({
      ...base,
      desired: 3,
      current: 3,
      pods: [pod(0), pod(1), pod(2, { drainStartedAt: NOW - 1000 })],
    });
    expect(p.restart).toEqual(['mail-2']);
    expect(p.statefulSetReplicas).toBe(3);
  });
});

describe('pod addressing', () => {
  it('derives ordinals and admin addresses', () => {
    expect(podOrdinal('mail', 'mail-12')).toBe(12);
    expect(podOrdinal('mail', 'mailx-1')).toBe(-1);
    expect(podAdminAddress({ status: { podIP: '10.1.2.3' } }, 9091)).toBe('10.1.2.3:9091');
    expect(podAdminAddress({ status: { podIP: 'fd00::1' } }, 9091)).toBe('[fd00::1]:9091');
    expect(podAdminAddress({ status: {} }, 9091)).toBeUndefined();
  });

  it('names the peers a draining pod hands mail to: stable DNS names, or pod IPs on request', () => {
    const pods = [2, 0, 1].map((i) => ({
      metadata: { name: `mail-${i}` },
      status: { podIP: `127.1.0.${i + 1}` },
    }));
    expect(peerAddresses(relay(), pods, 2, 587, 'dns')).toEqual([
      'mail-0.mail-headless.apps.svc:587',
      'mail-1.mail-headless.apps.svc:587',
    ]);
    expect(peerAddresses(relay(), pods, 2, 587, 'ip')).toEqual(['127.1.0.1:587', '127.1.0.2:587']);
  });
});
