import { domainOf, groupRecipients, routeFor, smarthostKey } from '../../../../relay/delivery/router.js';

const smarthost = { host: 'Smtp.Upstream.Test', port: 587, tls: 'starttls' as const };
const config = {
  delivery: { route: { mode: 'direct' as const } } as never,
  domains: [
    {
      name: 'Example.com',
      allowedUsers: [],
      allowedSenders: [],
      route: { mode: 'smarthost' as const, smarthost },
    },
    { name: 'plain.test', allowedUsers: [], allowedSenders: [] },
  ],
};

describe('routeFor', () => {
  test('the sender domain route wins, matched case-insensitively', () => {
    expect(routeFor(config, 'app@EXAMPLE.com')).toEqual({ mode: 'smarthost', smarthost });
  });
  test('domains without a route, unknown domains and the null sender use the relay-wide route', () => {
    expect(routeFor(config, 'a@plain.test')).toEqual({ mode: 'direct' });
    expect(routeFor(config, 'a@sub.example.com')).toEqual({ mode: 'direct' });
    expect(routeFor(config, '')).toEqual({ mode: 'direct' });
  });
});

describe('groupRecipients', () => {
  test('direct: one group per recipient domain, in order', () => {
    const groups = groupRecipients({ mode: 'direct' }, ['a@x.test', 'b@Y.test', 'c@X.TEST', 'nodomain']);
    expect(groups.map((g) => [g.destination.key, g.recipients])).toEqual([
      ['direct:x.test', ['a@x.test', 'c@X.TEST']],
      ['direct:y.test', ['b@Y.test']],
      ['direct:', ['nodomain']],
    ]);
  });
  test('smarthost: one group, keyed by host, port, TLS mode and credentials', () => {
    const groups = groupRecipients({ mode: 'smarthost', smarthost }, ['a@x.test', 'b@y.test']);
    expect(groups).toHaveLength(1);
    expect(groups[0]!.destination.key).toBe('smarthost:smtp.upstream.test:587:starttls:');
    expect(smarthostKey({ ...smarthost, auth: { usernameFile: '/u', passwordFile: '/p' } })).not.toBe(
      groups[0]!.destination.key,
    );
  });
  test('a smarthost route without a smarthost is refused', () => {
    expect(() => groupRecipients({ mode: 'smarthost' }, ['a@x'])).toThrow(/requires smarthost/);
  });
  test('domainOf takes the last @', () => {
    expect(domainOf('"a@b"@Example.ORG')).toBe('example.org');
    expect(domainOf('postmaster')).toBe('');
  });
});
