import { clientKey, isAddressAllowed, parseNetworks } from '../../../relay/policy/network.js';

describe('client networks', () => {
  const { networks, errors } = parseNetworks(['127.0.0.0/8', '10.0.0.0/8', '::1/128', 'fd00::/8']);

  test('parses CIDRs', () => {
    expect(errors).toEqual([]);
    expect(networks).toHaveLength(4);
  });

  test.each([
    ['127.0.0.1', true],
    ['10.200.3.4', true],
    ['::ffff:10.1.2.3', true],
    ['::1', true],
    ['fd12::5', true],
    ['192.0.2.1', false],
    ['::ffff:192.0.2.1', false],
    ['2001:db8::1', false],
    ['not-an-ip', false],
  ])('%s allowed: %s', (address, allowed) => {
    expect(isAddressAllowed(address, networks)).toBe(allowed);
  });

  test('bad entries are named', () => {
    expect(parseNetworks(['10.0.0.1/8', 'nonsense', '10.0.0.0/33']).errors).toEqual([
      '[0]: "10.0.0.1/8" has host bits set; did you mean 10.0.0.0/8?',
      '[1]: "nonsense" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)',
      '[2]: "10.0.0.0/33" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)',
    ]);
  });

  test('per-client keys group IPv6 by /64', () => {
    expect(clientKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe(clientKey('2001:db8:1:2:bbbb::2'));
    expect(clientKey('2001:db8:1:3::1')).not.toBe(clientKey('2001:db8:1:2::1'));
  });
});
