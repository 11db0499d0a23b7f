import { looksLikeProxyHeader, parseProxyHeader } from '../../../relay/smtp/proxy-protocol.js';
import { V2_SIGNATURE, proxyV1, proxyV2 } from '../../helpers/proxy-header.js';

const v1 = (line: string) => parseProxyHeader(Buffer.from(line, 'latin1'));

describe('PROXY protocol v1', () => {
  test('TCP4 and TCP6 carry the source address and port; what follows stays for SMTP', () => {
    const buf = Buffer.concat([proxyV1('192.0.2.7', 51234), Buffer.from('EHLO x\r\n')]);
    expect(parseProxyHeader(buf)).toEqual({
      status: 'ok',
      version: 1,
      length: buf.indexOf('EHLO'),
      source: { address: '192.0.2.7', port: 51234 },
    });
    expect(v1('PROXY TCP6 2001:DB8::0:1 ::1 65535 0\r\n')).toMatchObject({
      source: { address: '2001:db8::1', port: 65535 },
    });
    // A dual-stack proxy's IPv4 client, written as IPv4-mapped IPv6: keyed as the IPv4 address.
    expect(v1('PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n')).toMatchObject({ source: { address: '192.0.2.7' } });
  });

  test('UNKNOWN: the connection keeps its own address, whatever follows on the line', () => {
    expect(v1('PROXY UNKNOWN\r\n')).toEqual({ status: 'ok', version: 1, length: 15 });
    expect(v1('PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n')).toEqual({ status: 'ok', version: 1, length: 35 });
  });

  test.each([
    ['PROXY TCP4 192.0.2.7 192.0.2.1 1 2\n', /CRLF/],
    ['PROXY TCP4 192.0.2.7\r192.0.2.1 1 2\r\n', /CRLF/],
    ['PROXY TCP4  192.0.2.7 192.0.2.1 1 2\r\n', /six fields/],
    ['PROXY TCP4 192.0.2.7 192.0.2.1 1 2 \r\n', /six fields/],
    ['PROXY TCP4 192.0.2.07 192.0.2.1 1 2\r\n', /IPv4/],
    ['PROXY TCP4 300.0.2.7 192.0.2.1 1 2\r\n', /IPv4/],
    ['PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n', /IPv4/],
    ['PROXY TCP6 192.0.2.7 ::1 1 2\r\n', /IPv6/],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /IPv6/],
    ['PROXY TCP6 relay.example ::1 1 2\r\n', /IPv6/],
    ['PROXY TCP4 192.0.2.7 192.0.2.1 65536 2\r\n', /port/],
    ['PROXY TCP4 192.0.2.7 192.0.2.1 01 2\r\n', /port/],
    ['PROXY UDP4 192.0.2.7 192.0.2.1 1 2\r\n', /TCP4, TCP6 or UNKNOWN/],
    ['PROXY tcp4 192.0.2.7 192.0.2.1 1 2\r\n', /TCP4, TCP6 or UNKNOWN/],
    [`PROXY UNKNOWN ${'x'.repeat(100)}\r\n`, /longer than 107/],
  ])('%j is invalid', (line, reason) => {
    const r = v1(line);
    expect(r.status).toBe('invalid');
    expect(r.status === 'invalid' && r.reason).toMatch(reason);
  });

  test('the longest legal line (107 bytes) is accepted; partial lines wait for more', () => {
    const longest = `PROXY UNKNOWN ${'ffff:'.repeat(7)}ffff ${'ffff:'.repeat(7)}ffff 65535 65535\r\n`;
    expect(longest).toHaveLength(107);
    expect(v1(longest)).toMatchObject({ status: 'ok', length: 107 });
    for (const part of ['P', 'PROXY', 'PROXY TCP4 192.0.2.7', 'PROXY TCP4 192.0.2.7 192.0.2.1 1 2\r'])
      expect(v1(part)).toEqual({ status: 'incomplete' });
  });
});

describe('PROXY protocol v2', () => {
  test('PROXY over TCP/IPv4 and TCP/IPv6, TLVs skipped, the rest left for SMTP or TLS', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x03, 1, 2, 3]); // PP2_TYPE_NOOP
    const header = proxyV2({ source: '192.0.2.7', sourcePort: 4242, tlv });
    const r = parseProxyHeader(Buffer.concat([header, Buffer.from([0x16, 0x03, 0x01])]));
    expect(r).toEqual({
      status: 'ok',
      version: 2,
      length: header.length,
      source: { address: '192.0.2.7', port: 4242 },
    });
    expect(parseProxyHeader(proxyV2({ source: '2001:db8::5' }))).toMatchObject({
      source: { address: '2001:db8::5', port: 40000 },
    });
    expect(parseProxyHeader(proxyV2({ source: '::ffff:192.0.2.8' }))).toMatchObject({
      source: { address: '192.0.2.8' },
    });
  });

  test('LOCAL (a health check) and families without a TCP address keep the connection address', () => {
    expect(parseProxyHeader(proxyV2({ command: 'LOCAL' }))).toEqual({ status: 'ok', version: 2, length: 16 });
    const cases: [number, Buffer][] = [
      [0x00, proxyV2({ source: '192.0.2.7' })], // UNSPEC
      [0x12, proxyV2({ source: '192.0.2.7' })], // UDP over IPv4
      [0x22, proxyV2({ source: '2001:db8::5' })], // UDP over IPv6
      [
        0x31,
        Buffer.concat([
          proxyV2({ command: 'LOCAL' }).subarray(0, 14),
          Buffer.from([0, 216]),
          Buffer.alloc(216),
        ]),
      ],
    ];
    for (const [fam, header] of cases) {
      const h = Buffer.from(header);
      h[12] = 0x21;
      h[13] = fam;
      expect(parseProxyHeader(h)).toEqual({ status: 'ok', version: 2, length: h.length });
    }
  });

  test.each([
    ['version 1 in the version nibble', (h: Buffer) => (h[12] = 0x11), /version 1/],
    ['an unassigned command', (h: Buffer) => (h[12] = 0x22), /command 2/],
    ['an undefined family', (h: Buffer) => (h[13] = 0x41), /not defined/],
    ['an undefined transport', (h: Buffer) => (h[13] = 0x13), /not defined/],
    ['an IPv6 family with an IPv4-sized block', (h: Buffer) => (h[13] = 0x21), /needs 36/],
  ])('%s is invalid', (_what, spoil, reason) => {
    const h = Buffer.from(proxyV2({ source: '192.0.2.7' }));
    spoil(h);
    const r = parseProxyHeader(h);
    expect(r.status === 'invalid' && r.reason).toMatch(reason);
  });

  test('a header cut short waits for the rest (the caller bounds the wait)', () => {
    const h = proxyV2({ source: '192.0.2.7' });
    for (const n of [1, 12, 15, 16, h.length - 1])
      expect(parseProxyHeader(h.subarray(0, n))).toEqual({ status: 'incomplete' });
  });
});

describe('anything else', () => {
  test('SMTP, TLS and HTTP are not PROXY headers', () => {
    for (const start of [
      'EHLO client.example\r\n',
      '\x16\x03\x01\x02\x00',
      'GET / HTTP/1.1\r\n',
      '\r\n\r\nQUIT',
    ])
      expect(parseProxyHeader(Buffer.from(start, 'latin1'))).toMatchObject({ status: 'invalid' });
    // A blank line could still become a v2 signature: it waits (a trusted proxy's header is bounded in time).
    expect(parseProxyHeader(Buffer.from('\r\n'))).toEqual({ status: 'incomplete' });
  });

  test('looksLikeProxyHeader: recognises either version from its first bytes', () => {
    expect(looksLikeProxyHeader(proxyV1('192.0.2.7'))).toBe('yes');
    expect(looksLikeProxyHeader(V2_SIGNATURE)).toBe('yes');
    expect(looksLikeProxyHeader(Buffer.from('PROX'))).toBe('undecided');
    expect(looksLikeProxyHeader(V2_SIGNATURE.subarray(0, 5))).toBe('undecided');
    expect(looksLikeProxyHeader(Buffer.from('EHLO x\r\n'))).toBe('no');
    expect(looksLikeProxyHeader(Buffer.from('\r\nEHLO'))).toBe('no');
    expect(looksLikeProxyHeader(Buffer.from([0x16, 0x03, 0x01]))).toBe('no');
  });
});
