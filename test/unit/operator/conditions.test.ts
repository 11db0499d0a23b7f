import { findCondition, rfc3339, setCondition, setConditions } from '../../../operator/runtime/conditions.js';

const T0 = '2025-01-01T00:00:00Z';
const T1 = '2025-01-01T00:05:00Z';

describe('conditions', () => {
  it('sets lastTransitionTime when a condition appears', () => {
    const list = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Pending', message: 'm' },
      1,
      T0,
    );
    expect(list).toEqual([
      {
        type: 'Ready',
        status: 'False',
        reason: 'Pending',
        message: 'm',
        lastTransitionTime: T0,
        observedGeneration: 1,
      },
    ]);
  });

  it('keeps lastTransitionTime when only reason, message or generation change', () => {
    const a = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Pending', message: 'm' },
      1,
      T0,
    );
    const b = setCondition(a, { type: 'Ready', status: 'False', reason: 'Waiting', message: 'n' }, 2, T1);
    expect(findCondition(b, 'Ready')).toMatchObject({
      reason: 'Waiting',
      message: 'n',
      observedGeneration: 2,
    });
    expect(findCondition(b, 'Ready')!.lastTransitionTime).toBe(T0);
  });

  it('moves lastTransitionTime on a real transition', () => {
    const a = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Pending', message: 'm' },
      1,
      T0,
    );
    const b = setCondition(a, { type: 'Ready', status: 'True', reason: 'Ready', message: 'ok' }, 1, T1);
    expect(findCondition(b, 'Ready')!.lastTransitionTime).toBe(T1);
  });

  it('is a fixed point at steady state and keeps other types and order', () => {
    const inputs = [
      { type: 'Ready', status: 'True' as const, reason: 'Ready', message: 'ok' },
      { type: 'Degraded', status: 'False' as const, reason: 'AsExpected', message: '' },
    ];
    const a = setConditions([], inputs, 3, T0);
    const withOther = [
      { type: 'Custom', status: 'True' as const, reason: 'X', message: '', lastTransitionTime: T0 },
      ...a,
    ];
    const b = setConditions(withOther, inputs, 3, T1);
    expect(b).toEqual(withOther);
  });

  it('formats times like the API server', () => {
    expect(rfc3339(Date.parse('2025-03-04T05:06:07.891Z'))).toBe('2025-03-04T05:06:07Z');
  });
});
