import {
  finishAttempt,
  initialState,
  pendingRecipients,
  recordOutcomes,
} from '../../../../relay/delivery/outcome.js';
import { fromReply, localDeferral } from '../../../../relay/delivery/replies.js';
import type { Envelope } from '../../../../relay/spool/envelope.js';

const T0 = 1_800_000_000_000;
const retry = { firstRetry: 300, maxBackoff: 4000, maxLifetime: 86_400, delayWarningAfter: 0 };
const envelope = (over: Partial<Envelope> = {}): Envelope => ({
  mailFrom: 'app@example.com',
  recipients: ['a@x.test', 'b@x.test', 'c@y.test'],
  receivedAt: T0,
  listener: 'relay',
  client: { address: '127.0.0.1' },
  ...over,
});

describe('recordOutcomes', () => {
  test('delivered and bounced are final, deferred stays pending with its reason', () => {
    const env = envelope();
    const s = recordOutcomes(initialState(env), [
      fromReply('a@x.test', '250 2.0.0 ok', 'mx.x'),
      fromReply('b@x.test', '550 5.1.1 unknown', 'mx.x'),
      localDeferral('c@y.test', '4.4.1', 'connection refused', 'mx.y'),
    ]);
    expect(s.recipients).toEqual({
      'a@x.test': {
        status: 'delivered',
        lastReply: '250 2.0.0 ok',
        statusCode: '2.0.0',
        fromRemote: true,
        remoteMta: 'mx.x',
      },
      'b@x.test': {
        status: 'failed',
        lastReply: '550 5.1.1 unknown',
        statusCode: '5.1.1',
        fromRemote: true,
        remoteMta: 'mx.x',
      },
      'c@y.test': {
        status: 'pending',
        lastReply: 'connection refused',
        statusCode: '4.4.1',
        fromRemote: false,
        remoteMta: 'mx.y',
      },
    });
    expect(pendingRecipients(env, s)).toEqual(['c@y.test']);
  });

  test('a final outcome is never undone', () => {
    const s1 = recordOutcomes(initialState(envelope()), [fromReply('a@x.test', '250 ok')]);
    const s2 = recordOutcomes(s1, [fromReply('a@x.test', '451 later')]);
    expect(s2.recipients['a@x.test']!.status).toBe('delivered');
  });
});

describe('finishAttempt', () => {
  test('partial result: failures reported once, the rest deferred with backoff', () => {
    const env = envelope();
    const s = recordOutcomes(initialState(env), [
      fromReply('a@x.test', '250 ok', 'mx.x'),
      fromReply('b@x.test', '550 5.1.1 unknown', 'mx.x'),
      localDeferral('c@y.test', '4.4.1', 'refused'),
    ]);
    const d = finishAttempt(env, s, T0 + 1000, retry);
    expect(d.finished).toBe(false);
    expect(d.state.attempts).toBe(1);
    expect(d.state.nextAttemptAt).toBe(T0 + 1000 + 300_000);
    expect(d.bounce).toEqual([
      {
        recipient: 'b@x.test',
        action: 'failed',
        status: '5.1.1',
        remoteMta: 'mx.x',
        diagnostic: { type: 'smtp', text: '550 5.1.1 unknown' },
        lastAttemptAt: T0 + 1000,
      },
    ]);
    expect(d.state.recipients['b@x.test']!.reported).toBe(true);
    // the next attempt does not report b again
    const again = finishAttempt(env, d.state, T0 + 400_000, retry);
    expect(again.bounce).toEqual([]);
    expect(again.state.nextAttemptAt).toBe(T0 + 400_000 + 600_000);
  });

  test('expiry fails the pending recipients with 5.4.7, keeping the last reason', () => {
    const env = envelope({ recipients: ['c@y.test'] });
    const s = recordOutcomes(initialState(env), [fromReply('c@y.test', '451 4.7.1 greylisted', 'mx.y')]);
    const d = finishAttempt(env, s, T0 + 86_400_000, retry);
    expect(d.finished).toBe(true);
    expect(d.allExpired).toBe(true);
    expect(d.bounce).toEqual([
      expect.objectContaining({
        recipient: 'c@y.test',
        status: '5.4.7',
        diagnostic: { type: 'smtp', text: '451 4.7.1 greylisted' },
      }),
    ]);
  });

  test('a bounce is never bounced: null-sender failures are dropped and counted', () => {
    const env = envelope({ mailFrom: '', recipients: ['a@x.test'] });
    const s = recordOutcomes(initialState(env), [fromReply('a@x.test', '550 no')]);
    const d = finishAttempt(env, s, T0, retry);
    expect(d).toMatchObject({ finished: true, bounce: [], delay: [], dropped: 1 });
  });

  test('a delay notice goes out once, when due, for the pending recipients', () => {
    const r = { ...retry, delayWarningAfter: 3600 };
    const env = envelope({ recipients: ['c@y.test'] });
    const s = recordOutcomes(initialState(env), [localDeferral('c@y.test', '4.4.1', 'refused')]);
    expect(finishAttempt(env, s, T0 + 3_599_000, r).delay).toEqual([]);
    const d = finishAttempt(env, s, T0 + 3_600_000, r);
    expect(d.delay).toEqual([
      expect.objectContaining({
        recipient: 'c@y.test',
        action: 'delayed',
        status: '4.4.1',
        willRetryUntil: T0 + 86_400_000,
      }),
    ]);
    expect(d.state.delayNotified).toBe(true);
    expect(finishAttempt(env, d.state, T0 + 7_200_000, r).delay).toEqual([]);
  });

  test('all delivered: finished, nothing to report', () => {
    const env = envelope({ recipients: ['a@x.test'] });
    const d = finishAttempt(
      env,
      recordOutcomes(initialState(env), [fromReply('a@x.test', '250 ok')]),
      T0,
      retry,
    );
    expect(d).toMatchObject({ finished: true, bounce: [], delay: [], dropped: 0, allExpired: false });
  });
});
