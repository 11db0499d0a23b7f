import type { ShapingConfig } from '../../../../relay/config/schema.js';
import type { DeliveryGroup } from '../../../../relay/delivery/router.js';
import {
  directSite,
  localShapingGate,
  type Admission,
  patternMatches,
  siteLimits,
  siteOf,
  siteWithoutDns,
} from '../../../../relay/delivery/sites.js';

const direct = (domain: string): DeliveryGroup => ({
  destination: { kind: 'direct', key: `direct:${domain}`, domain },
  recipients: [`a@${domain}`],
});
const smarthostGroup: DeliveryGroup = {
  destination: {
    kind: 'smarthost',
    key: 'smarthost:x',
    smarthost: { host: 'Smtp.Upstream.Test', port: 587, tls: 'starttls' },
  },
  recipients: ['a@one.test', 'b@two.test'],
};
const mxHosts = (...names: string[]) => ({
  kind: 'mx' as const,
  hosts: names.map((exchange, i) => ({ exchange, priority: i })),
});

describe('the site of a delivery group', () => {
  test.each([
    [
      'MX hosts, sorted and lower-cased',
      'a.test',
      mxHosts('MX2.p.test', 'mx1.p.test'),
      'mx:mx1.p.test,mx2.p.test',
    ],
    [
      'a domain without MX is its own site',
      'b.test',
      { kind: 'implicit' as const, hosts: [{ exchange: 'b.test', priority: 0 }] },
      'mx:b.test',
    ],
    ['DNS trouble: the domain', 'c.test', { kind: 'tempfail' as const, error: 'SERVFAIL' }, 'domain:c.test'],
    ['NXDOMAIN: the domain', 'd.test', { kind: 'nxdomain' as const }, 'domain:d.test'],
    ['null MX: the domain', 'e.test', { kind: 'null-mx' as const }, 'domain:e.test'],
  ])('%s', (_what, domain, answer, key) => {
    expect(directSite(domain, answer).key).toBe(key);
  });

  test('domains sharing MX hosts (in any order) share one site; names cover domain and hosts', () => {
    const one = directSite('one.test', mxHosts('mx-b.p.test', 'mx-a.p.test'));
    const two = directSite('two.test', mxHosts('mx-a.p.test', 'mx-b.p.test'));
    expect(one.key).toBe(two.key);
    expect(one.names).toEqual(['one.test', 'mx-a.p.test', 'mx-b.p.test']);
  });

  test('a smarthost route is one site per host:port, whatever the recipients', async () => {
    const resolver = { mailHosts: () => Promise.reject(new Error('not asked')) };
    expect(await siteOf(resolver, smarthostGroup)).toEqual({
      key: 'smarthost:smtp.upstream.test:587',
      names: ['smtp.upstream.test'],
    });
  });

  test('direct: looked up with the resolver; a failing lookup falls back to the domain', async () => {
    expect(
      (await siteOf({ mailHosts: () => Promise.resolve(mxHosts('mx.p.test')) }, direct('a.test'))).key,
    ).toBe('mx:mx.p.test');
    expect((await siteOf({ mailHosts: () => Promise.reject(new Error('boom')) }, direct('a.test'))).key).toBe(
      'domain:a.test',
    );
    expect(siteWithoutDns(direct('a.test'))).toEqual({ key: 'domain:a.test', names: ['a.test'] });
  });
});

describe('site limits', () => {
  const shaping: ShapingConfig = {
    maxConnections: 20,
    deliveriesPerConnection: 100,
    messagesPerMinute: 0,
    sites: [
      { match: ['gmail.com', '*.google.com'], maxConnections: 5 },
      { match: ['*.outlook.com'], messagesPerMinute: 600, deliveriesPerConnection: 10 },
      { match: ['smtp.upstream.test', 'gmail.com'], maxConnections: 1 },
    ],
  };

  test.each([
    ['no override: the defaults', ['other.test', 'mx.other.test'], [20, 100, 0, 'default']],
    ['the recipient domain', ['gmail.com'], [5, 100, 0, 'gmail.com']],
    ['an MX host under a suffix', ['example.org', 'aspmx.l.google.com'], [5, 100, 0, 'gmail.com']],
    [
      'the override states only what it changes',
      ['x.test', 'x-test.mail.protection.outlook.com'],
      [20, 10, 600, '*.outlook.com'],
    ],
    ['the smarthost host', ['smtp.upstream.test'], [1, 100, 0, 'smtp.upstream.test']],
    ['the first matching override wins', ['gmail.com', 'smtp.upstream.test'], [5, 100, 0, 'gmail.com']],
    ['a suffix does not match the bare name', ['google.com'], [20, 100, 0, 'default']],
  ])('%s', (_what, names, [maxConnections, deliveriesPerConnection, messagesPerMinute, label]) => {
    expect(siteLimits(shaping, names)).toEqual({
      maxConnections,
      deliveriesPerConnection,
      messagesPerMinute,
      label,
    });
  });

  test.each([
    ['gmail.com', 'gmail.com', true],
    ['GMail.com', 'gmail.com', true],
    ['gmail.com', 'mail.gmail.com', false],
    ['*.google.com', 'aspmx.l.google.com', true],
    ['*.google.com', 'notgoogle.com', false],
  ])('pattern %s against %s: %s', (pattern, name, want) => {
    expect(patternMatches(pattern, name)).toBe(want);
  });
});

describe('localShapingGate', () => {
  const slot = (a: Admission) => ('slot' in a ? a.slot : null);
  test('connection slots per site, freed once per release', async () => {
    const gate = localShapingGate();
    const first = slot(await gate.admit('s', 2, 0));
    const second = slot(await gate.admit('s', 2, 0));
    expect(await gate.admit('s', 2, 0)).toEqual({ refused: 'connections', retryAfterMs: 0 });
    expect(slot(await gate.admit('other', 2, 0))).not.toBeNull();
    first!.release();
    first!.release();
    expect(slot(await gate.admit('s', 2, 0))).not.toBeNull();
    expect(slot(await gate.admit('s', 2, 0))).toBeNull();
    second!.release();
  });

  test('messages per minute: a burst of that many, then the time until the next one; a refusal holds no slot', async () => {
    let now = 0;
    const gate = localShapingGate(() => now);
    for (let i = 0; i < 3; i++) slot(await gate.admit('s', 10, 3))!.release();
    expect(await gate.admit('s', 10, 3)).toEqual({ refused: 'rate', retryAfterMs: 20_000 });
    expect(slot(await gate.admit('other', 10, 3))).not.toBeNull();
    now += 20_000;
    const only = slot(await gate.admit('s', 1, 3));
    expect(only).not.toBeNull(); // the refused asks above took no slot
    expect(await gate.admit('s', 1, 0)).toMatchObject({ refused: 'connections' });
    only!.release();
    expect(slot(await gate.admit('s', 1, 0))).not.toBeNull();
  });
});
