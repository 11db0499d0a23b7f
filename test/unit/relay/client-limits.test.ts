import { ClientConnectionLimits, underConnectionLimit } from '../../../relay/policy/client-limits.js';
import { parseNetworks } from '../../../relay/policy/network.js';

const limits = { maxConnectionsPerClient: 3, connectionsPerMinutePerClient: 0 };
const none = parseNetworks([]).networks;

describe('per-client connection limits', () => {
  test('the count limit (0: unlimited)', () => {
    expect(underConnectionLimit(2, 3)).toBe(true);
    expect(underConnectionLimit(3, 3)).toBe(false);
    expect(underConnectionLimit(10_000, 0)).toBe(true);
  });

  test('one address holding the limit is refused; another gets in; a close frees a place', () => {
    const l = new ClientConnectionLimits();
    const keys = [1, 2, 3].map(() => l.admit('192.0.2.1', limits, none));
    expect(keys.every((k) => k.ok)).toBe(true);
    expect(l.admit('192.0.2.1', limits, none)).toMatchObject({
      ok: false,
      reason: 'client_connections',
      reply: { code: 421, enhanced: '4.7.0' },
    });
    expect(l.admit('192.0.2.2', limits, none).ok).toBe(true);
    l.release(keys[0]!.key);
    expect(l.admit('192.0.2.1', limits, none).ok).toBe(true);
  });

  test('IPv6 clients share the limit of their /64; IPv4-mapped addresses count as IPv4', () => {
    const l = new ClientConnectionLimits();
    for (const a of ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff::3'])
      expect(l.admit(a, limits, none).ok).toBe(true);
    expect(l.admit('2001:db8:1:2:abcd::9', limits, none).ok).toBe(false);
    expect(l.admit('2001:db8:1:3::1', limits, none).ok).toBe(true);
    l.admit('::ffff:192.0.2.7', limits, none);
    expect(l.openFrom('192.0.2.7')).toBe(1);
  });

  test('exempt networks are neither limited nor counted', () => {
    const l = new ClientConnectionLimits();
    const exempt = parseNetworks(['10.0.0.0/8']).networks;
    for (let i = 0; i < 10; i++) expect(l.admit('10.1.2.3', limits, exempt)).toEqual({ ok: true });
    expect(l.clients).toBe(0);
    l.release(undefined);
    expect(l.clients).toBe(0);
  });

  test('connection rate: a burst of connectionsPerMinutePerClient, then refill over the minute', () => {
    let now = 0;
    const l = new ClientConnectionLimits(() => now);
    const rate = { maxConnectionsPerClient: 0, connectionsPerMinutePerClient: 6 };
    for (let i = 0; i < 6; i++) l.release(l.admit('192.0.2.1', rate, none).ok ? '192.0.2.1' : undefined);
    expect(l.admit('192.0.2.1', rate, none)).toMatchObject({
      ok: false,
      reason: 'client_connection_rate',
      retryAfterMs: 10_000,
    });
    expect(l.admit('192.0.2.9', rate, none).ok).toBe(true);
    now += 10_000;
    expect(l.admit('192.0.2.1', rate, none).ok).toBe(true);
  });

  test('a connection refused by the count limit takes no rate token', () => {
    const l = new ClientConnectionLimits(() => 0);
    const both = { maxConnectionsPerClient: 1, connectionsPerMinutePerClient: 2 };
    const first = l.admit('192.0.2.1', both, none);
    for (let i = 0; i < 5; i++) expect(l.admit('192.0.2.1', both, none).ok).toBe(false);
    l.release(first.ok ? first.key : undefined);
    expect(l.admit('192.0.2.1', both, none).ok).toBe(true); // the second token is still there
  });

  test('memory: a key is forgotten when its last connection closes', () => {
    const l = new ClientConnectionLimits();
    const admitted = Array.from({ length: 100 }, (_, i) => l.admit(`192.0.2.${i}`, limits, none));
    expect(l.clients).toBe(100);
    for (const a of admitted) l.release(a.ok ? a.key : undefined);
    expect(l.clients).toBe(0);
  });
});
