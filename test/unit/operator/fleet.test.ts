import type { Condition } from '../../../operator/api/common.js';
import { fleetStoreCondition, fleetStoreEvent } from '../../../operator/smtprelay/status.js';
import type { PodFleetAnswer } from '../../../operator/smtprelay/fleet.js';
import { relay } from './fixtures.js';

const STORE = 'redis://valkey.infra.svc:6379/2';
const withStore = relay({ fleetStore: { url: STORE, timeoutMs: 250 } });
const pods = (n: number, answer: (i: number) => Omit<PodFleetAnswer, 'pod'>): PodFleetAnswer[] =>
  Array.from({ length: n }, (_, i) => ({ pod: `mail-${i}`, ...answer(i) }));

describe('fleetStoreCondition', () => {
  it('a large degraded fleet names the first five pods and counts the rest', () => {
    const c = fleetStoreCondition(
      withStore,
      pods(40, (i) => ({ answer: i < 12 ? { state: 'degraded', error: 'READONLY' } : { state: 'shared' } })),
    );
    expect(c).toEqual({
      type: 'FleetStore',
      status: 'False',
      reason: 'Degraded',
      message: `12 of 40 ready pods (mail-0, mail-1, mail-2, mail-3, mail-4 and 7 more) cannot use the fleet store at ${STORE} and enforce rate limits, shaping and the suppression list alone: READONLY`,
    });
  });

  it('pods still on a config without the store are Pending, not Degraded (the reload is on its way)', () => {
    const c = fleetStoreCondition(
      withStore,
      pods(3, (i) => ({ answer: { state: i === 2 ? 'per_pod' : 'shared' } })),
    );
    expect(c).toMatchObject({ status: 'Unknown', reason: 'Pending' });
    expect(c.message).toBe(
      `1 of 3 ready pods (mail-2) still decide alone: their config does not name the fleet store at ${STORE} yet`,
    );
  });

  it('a degraded pod outweighs pods still loading the config, and both are named', () => {
    const c = fleetStoreCondition(withStore, [
      { pod: 'mail-0', answer: { state: 'per_pod' } },
      { pod: 'mail-1', answer: { state: 'degraded', error: 'timeout after 250 ms' } },
    ]);
    expect(c.reason).toBe('Degraded');
    expect(c.message).toMatch(/: timeout after 250 ms; mail-0 not yet on a config with the store$/);
  });

  it('the same answers give the same condition (no clock, no counters in it)', () => {
    const a = pods(3, (i) => (i ? { answer: { state: 'shared' } } : { error: 'the pod has no IP yet' }));
    expect(fleetStoreCondition(withStore, a)).toEqual(fleetStoreCondition(withStore, structuredClone(a)));
  });
});

describe('fleetStoreEvent', () => {
  const c = (reason: string, status: Condition['status'] = 'False'): Condition => ({
    type: 'FleetStore',
    status,
    reason,
    message: `m ${reason}`,
    lastTransitionTime: '2025-01-01T00:00:00Z',
  });

  it('warns when the fleet becomes degraded from any state, False to False included', () => {
    expect(fleetStoreEvent(c('PerPod'), c('Degraded'))).toEqual({
      type: 'Warning',
      reason: 'FleetStoreDegraded',
      message: 'm Degraded',
    });
    expect(fleetStoreEvent(c('Shared', 'True'), c('Degraded'))?.reason).toBe('FleetStoreDegraded');
    expect(fleetStoreEvent(undefined, c('Degraded'))?.type).toBe('Warning');
  });

  it('tells of recovery, and is silent otherwise', () => {
    expect(fleetStoreEvent(c('Degraded'), c('Shared', 'True'))).toMatchObject({
      type: 'Normal',
      reason: 'FleetStoreShared',
    });
    expect(fleetStoreEvent(c('Degraded'), c('Degraded'))).toBeUndefined();
    expect(fleetStoreEvent(c('Pending', 'Unknown'), c('Shared', 'True'))).toBeUndefined();
    expect(fleetStoreEvent(undefined, c('PerPod'))).toBeUndefined();
  });
});
