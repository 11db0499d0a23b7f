import { formatDate, prelude, receivedHeader, scanHeaderSection } from '../../../relay/intake/headers.js';

const scan = (s: string, final = false) => scanHeaderSection(Buffer.from(s, 'latin1'), final);

describe('header section scanning', () => {
  test('fields up to the empty line', () => {
    const r = scan(
      'From: a@example.com\r\nSubject: hi\r\n there\r\nMessage-ID: <x@y>\r\n\r\nbody\r\nDate: not a header\r\n',
    );
    expect(r.complete).toBe(true);
    expect([...r.fields]).toEqual(['from', 'subject', 'message-id']);
  });

  test('incomplete until the end of the section is seen', () => {
    expect(scan('From: a@example.com\r\nSubj').complete).toBe(false);
    expect(scan('From: a@example.com\r\nDate: x').fields.has('date')).toBe(false);
    expect(scan('From: a@example.com\r\nDate: x', true)).toEqual({
      complete: true,
      fields: new Set(['from', 'date']),
      size: 28,
    });
  });

  test('a body without the empty line starts at the first non-header line', () => {
    const r = scan('Subject: x\nhello world\nDate: later\n');
    expect(r).toEqual({ complete: true, fields: new Set(['subject']), size: 11 });
    expect(scan('\r\nbody only')).toEqual({ complete: true, fields: new Set(), size: 0 });
    expect(scan(' continuation first\r\n')).toEqual({ complete: true, fields: new Set(), size: 0 });
  });
});

describe('header fix-ups', () => {
  const at = Date.UTC(2026, 10, 24, 2, 57, 35);

  test('RFC 5322 date', () => {
    expect(formatDate(at)).toBe('Tue, 24 Nov 2026 02:57:35 +0000');
    expect(formatDate(Date.UTC(2027, 0, 3, 4, 5, 6))).toBe('Sun, 3 Jan 2027 04:05:06 +0000');
  });

  test('Received header (RFC 5321 §4.4)', () => {
    const h = receivedHeader({
      helo: 'client.example',
      clientAddress: '::ffff:192.0.2.1',
      by: 'relay.example.com',
      protocol: 'ESMTPSA',
      id: 'abc.1',
      tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' },
      recipient: 'rcpt@example.net',
      date: at,
    });
    expect(h).toBe(
      'Received: from client.example ([192.0.2.1])\r\n' +
        '\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n' +
        '\tby relay.example.com (mailfleet) with ESMTPSA id abc.1\r\n' +
        '\tfor <rcpt@example.net>; Tue, 24 Nov 2026 02:57:35 +0000\r\n',
    );
  });

  test('Received: IPv6 literal, no HELO, several recipients (no "for"), hostile HELO neutralised', () => {
    const h = receivedHeader({ clientAddress: '2001:db8::1', by: 'r', protocol: 'ESMTP', id: 'i', date: at });
    expect(h).toBe(
      'Received: from [IPv6:2001:db8::1] ([IPv6:2001:db8::1])\r\n\tby r (mailfleet) with ESMTP id i; Tue, 24 Nov 2026 02:57:35 +0000\r\n',
    );
    const hostile = receivedHeader({
      helo: 'x(y);z',
      clientAddress: '192.0.2.1',
      by: 'r',
      protocol: 'ESMTP',
      id: 'i',
      date: at,
    });
    expect(hostile).toMatch(/^Received: from x\?y\?\?z \(\[192\.0\.2\.1\]\)/);
  });

  test('Date and Message-ID added only when missing, and never for handoff', () => {
    const args = { received: 'Received: x\r\n', hostname: 'relay.example.com', now: at };
    const none = prelude({ ...args, fields: new Set(['from']), fixups: true });
    expect(none).toMatch(
      /^Received: x\r\nDate: Tue, 24 Nov 2026 02:57:35 \+0000\r\nMessage-ID: <[0-9a-z]+\.[0-9a-f]{18}@relay\.example\.com>\r\n$/,
    );
    expect(prelude({ ...args, fields: new Set(['date', 'message-id']), fixups: true })).toBe(
      'Received: x\r\n',
    );
    expect(prelude({ ...args, fields: new Set(), fixups: false })).toBe('Received: x\r\n');
  });
});
