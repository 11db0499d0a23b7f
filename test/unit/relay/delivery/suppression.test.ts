import type { SuppressionConfig } from '../../../../relay/config/schema.js';
import type { OutgoingMessage } from '../../../../relay/delivery/attempt.js';
import { fromReply, localBounce, type RecipientOutcome } from '../../../../relay/delivery/replies.js';
import type { DeliveryGroup } from '../../../../relay/delivery/router.js';
import { suppressionReason, withSuppression } from '../../../../relay/delivery/suppression.js';

const cfg = (over: Partial<SuppressionConfig> = {}): SuppressionConfig => ({
  enabled: true,
  codes: ['5.1.1', '5.1.6', '5.1.10', '5.2.1'],
  ttl: 3600,
  action: 'refuse',
  ...over,
});

describe('suppressionReason: which failures put a recipient on the list', () => {
  test.each([
    ['550 5.1.1 <a@x.test>: no such user', 'suppressed'],
    ['550 5.2.1 mailbox disabled', 'suppressed'],
    ['550 5.7.1 rejected by policy', 'not suppressed'],
    ['554 5.7.1 spam', 'not suppressed'],
    ['450 4.2.1 mailbox busy', 'not suppressed'],
  ])('%s: %s', (reply, expected) => {
    const o = fromReply('a@x.test', reply, 'mx.x.test');
    expect(suppressionReason(o, cfg()) ? 'suppressed' : 'not suppressed').toBe(expected);
  });

  test('a local failure never suppresses, nor anything when disabled', () => {
    expect(suppressionReason(localBounce('a@x.test', '5.1.1', 'no such domain'), cfg())).toBeUndefined();
    const remote = fromReply('a@x.test', '550 5.1.1 no such user', 'mx.x.test');
    expect(suppressionReason(remote, cfg({ enabled: false }))).toBeUndefined();
    expect(suppressionReason(remote, cfg())).toBe('mx.x.test: 550 5.1.1 no such user');
  });
});

describe('withSuppression', () => {
  const limits = { maxConnections: 1, deliveriesPerConnection: 1, messagesPerMinute: 0, label: 'default' };
  const msg = { id: 'Q1' } as OutgoingMessage;
  const group = (recipients: string[]): DeliveryGroup => ({
    destination: { kind: 'direct', key: 'direct:x.test', domain: 'x.test' },
    recipients,
  });
  function list(initial: Record<string, string> = {}) {
    const entries = new Map(Object.entries(initial).map(([a, r]) => [a, { reason: r, until: 86_400_000 }]));
    return {
      entries,
      isSuppressed: (a: string) => Promise.resolve(entries.get(a) ?? null),
      suppress: (a: string, reason: string) => Promise.resolve(void entries.set(a, { reason, until: 1 })),
    };
  }

  test('a permanent 5.1.1 from the downstream puts the recipient on the list; a 5.7.1 does not', async () => {
    const l = list();
    const deliver = withSuppression(
      () =>
        Promise.resolve<RecipientOutcome[]>([
          fromReply('gone@x.test', '550 5.1.1 no such user', 'mx.x.test'),
          fromReply('policy@x.test', '550 5.7.1 no', 'mx.x.test'),
          fromReply('ok@x.test', '250 2.0.0 ok', 'mx.x.test'),
        ]),
      { list: l, config: () => cfg() },
    );
    await deliver(
      msg,
      group(['gone@x.test', 'policy@x.test', 'ok@x.test']),
      new AbortController().signal,
      limits,
    );
    expect([...l.entries.keys()]).toEqual(['gone@x.test']);
  });

  test('action bounce: a suppressed recipient fails at once and is never sent; refuse sends it (RCPT refused it)', async () => {
    const sent: string[][] = [];
    const inner = (_m: OutgoingMessage, g: DeliveryGroup) => {
      sent.push(g.recipients);
      return Promise.resolve(g.recipients.map((r) => fromReply(r, '250 2.0.0 ok', 'mx.x.test')));
    };
    const l = list({ 'gone@x.test': 'mx: 550 5.1.1 no such user' });
    const bounce = withSuppression(inner, { list: l, config: () => cfg({ action: 'bounce' }) });
    const out = await bounce(msg, group(['gone@x.test', 'ok@x.test']), new AbortController().signal, limits);
    expect(sent).toEqual([['ok@x.test']]);
    expect(out.find((o) => o.recipient === 'gone@x.test')).toMatchObject({
      result: 'bounced',
      status: '5.1.1',
    });
    expect(out.find((o) => o.recipient === 'gone@x.test')!.reply).toMatch(/suppressed until .*no such user/);

    const all = await bounce(msg, group(['gone@x.test']), new AbortController().signal, limits);
    expect(sent).toHaveLength(1); // nothing left to send: no connection at all
    expect(all).toHaveLength(1);

    const refuse = withSuppression(inner, { list: l, config: () => cfg() });
    await refuse(msg, group(['gone@x.test']), new AbortController().signal, limits);
    expect(sent[1]).toEqual(['gone@x.test']);
  });
});
