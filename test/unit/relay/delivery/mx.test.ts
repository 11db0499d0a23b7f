import { MAX_ADDRESSES, planDirect, type MailHostsLookup } from '../../../../relay/delivery/mx.js';

type Hosts = Awaited<ReturnType<MailHostsLookup['mailHosts']>>;
type Addrs = Awaited<ReturnType<MailHostsLookup['addresses']>>;

function fakeResolver(hosts: Hosts, addrs: Record<string, Addrs>): MailHostsLookup {
  return {
    mailHosts: () => Promise.resolve(hosts),
    addresses: (host, family) => Promise.resolve(addrs[`${host}/${family}`] ?? { kind: 'nodata' }),
  };
}
const recs = (...a: string[]): Addrs => ({ kind: 'records', records: a.map((address) => ({ address })) });

describe('planDirect', () => {
  test('MX hosts in preference order, IPv4 then IPv6 addresses of each', async () => {
    const r = fakeResolver(
      {
        kind: 'mx',
        hosts: [
          { exchange: 'mx1.x', priority: 10 },
          { exchange: 'mx2.x', priority: 20 },
        ],
      },
      { 'mx1.x/4': recs('127.0.0.2'), 'mx1.x/6': recs('::1'), 'mx2.x/4': recs('127.0.0.3') },
    );
    expect(await planDirect(r, 'x')).toEqual({
      kind: 'connect',
      addresses: [
        { host: 'mx1.x', address: '127.0.0.2' },
        { host: 'mx1.x', address: '::1' },
        { host: 'mx2.x', address: '127.0.0.3' },
      ],
    });
  });

  test('an MX host without addresses is skipped; at most MAX_ADDRESSES are tried', async () => {
    const many = Array.from({ length: 10 }, (_, i) => `127.0.1.${i}`);
    const r = fakeResolver(
      {
        kind: 'mx',
        hosts: [
          { exchange: 'gone.x', priority: 1 },
          { exchange: 'big.x', priority: 2 },
        ],
      },
      { 'gone.x/4': { kind: 'nxdomain' }, 'big.x/4': recs(...many) },
    );
    const plan = await planDirect(r, 'x');
    expect(plan.kind === 'connect' && plan.addresses.map((a) => a.address)).toEqual(
      many.slice(0, MAX_ADDRESSES),
    );
  });

  test.each<[Hosts, string, string]>([
    [{ kind: 'null-mx' }, 'bounce', '5.1.10'],
    [{ kind: 'nxdomain' }, 'bounce', '5.1.2'],
    [{ kind: 'no-mail-host' }, 'bounce', '5.1.2'],
    [{ kind: 'tempfail', error: 'ETIMEOUT' }, 'defer', '4.4.3'],
  ])('%j → %s %s', async (hosts, kind, status) => {
    expect(await planDirect(fakeResolver(hosts, {}), 'x')).toMatchObject({ kind, status });
  });

  test('MX hosts whose addresses cannot be looked up defer', async () => {
    const r = fakeResolver(
      { kind: 'mx', hosts: [{ exchange: 'mx1.x', priority: 10 }] },
      { 'mx1.x/4': { kind: 'tempfail', error: 'ESERVFAIL' } },
    );
    expect(await planDirect(r, 'x')).toMatchObject({
      kind: 'defer',
      status: '4.4.3',
      reason: expect.stringContaining('ESERVFAIL'),
    });
  });

  test('an implicit MX is the domain itself; a recipient without a domain bounces', async () => {
    const r = fakeResolver(
      { kind: 'implicit', hosts: [{ exchange: 'x', priority: 0 }] },
      { 'x/4': recs('127.0.0.9') },
    );
    expect(await planDirect(r, 'x')).toEqual({
      kind: 'connect',
      addresses: [{ host: 'x', address: '127.0.0.9' }],
    });
    expect(await planDirect(r, '')).toMatchObject({ kind: 'bounce', status: '5.1.3' });
  });
});
