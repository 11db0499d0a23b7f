import { simpleParser } from 'mailparser';
import { composeDsn, headerSection, rfc5322Date, type DsnInput } from '../../../../relay/delivery/dsn.js';

const T0 = Date.UTC(2026, 11, 1, 10, 0, 0);
const input = (over: Partial<DsnInput> = {}): DsnInput => ({
  kind: 'failure',
  reportingMta: 'relay.example.com',
  queueId: 'ABC123DEF456GHI78',
  arrivalDate: T0,
  to: 'app@example.com',
  recipients: [
    {
      recipient: 'gone@example.org',
      action: 'failed',
      status: '5.1.1',
      remoteMta: 'mx1.example.org',
      diagnostic: { type: 'smtp', text: '550 5.1.1 <gone@example.org>: no such user' },
      lastAttemptAt: T0 + 60_000,
    },
    {
      recipient: 'slow@example.net',
      action: 'failed',
      status: '5.4.7',
      diagnostic: { type: 'X-mailfleet', text: 'connect to mx.example.net: Connection refused' },
      lastAttemptAt: T0 + 60_000,
    },
  ],
  originalHeaders: 'From: app@example.com\nTo: gone@example.org\nSubject: Hello',
  now: T0 + 60_000,
  messageId: '<ABC123DEF456GHI78.dsn@relay.example.com>',
  boundary: 'mf-boundary-1',
  ...over,
});

describe('composeDsn', () => {
  test('is an RFC 3464 multipart/report with the three parts, CRLF throughout', async () => {
    const raw = composeDsn(input());
    expect(raw).not.toMatch(/[^\r]\n/);
    const mail = await simpleParser(raw, { keepDeliveryStatus: true });
    expect(mail.headers.get('content-type')).toMatchObject({
      value: 'multipart/report',
      params: { 'report-type': 'delivery-status', boundary: 'mf-boundary-1' },
    });
    expect(mail.subject).toBe('Undelivered Mail Returned to Sender');
    expect(mail.headers.get('auto-submitted')).toBe('auto-replied');
    expect(mail.text).toContain('<gone@example.org>: host mx1.example.org said: 550 5.1.1');
    const types = mail.attachments.map((a) => a.contentType);
    expect(types).toEqual(['message/delivery-status', 'text/rfc822-headers']);
    const status = mail.attachments[0]!.content.toString();
    expect(status).toBe(
      [
        'Reporting-MTA: dns; relay.example.com',
        'X-Mailfleet-Queue-ID: ABC123DEF456GHI78',
        'Arrival-Date: Tue, 01 Dec 2026 10:00:00 +0000',
        '',
        'Final-Recipient: rfc822; gone@example.org',
        'Action: failed',
        'Status: 5.1.1',
        'Remote-MTA: dns; mx1.example.org',
        'Diagnostic-Code: smtp; 550 5.1.1 <gone@example.org>: no such user',
        'Last-Attempt-Date: Tue, 01 Dec 2026 10:01:00 +0000',
        '',
        'Final-Recipient: rfc822; slow@example.net',
        'Action: failed',
        'Status: 5.4.7',
        'Diagnostic-Code: X-mailfleet; connect to mx.example.net: Connection refused',
        'Last-Attempt-Date: Tue, 01 Dec 2026 10:01:00 +0000',
        '',
      ].join('\r\n'),
    );
    expect(mail.attachments[1]!.content.toString()).toBe(
      'From: app@example.com\r\nTo: gone@example.org\r\nSubject: Hello\r\n',
    );
  });

  test('a delay notice says so and carries Will-Retry-Until', async () => {
    const raw = composeDsn(
      input({
        kind: 'delay',
        recipients: [
          {
            recipient: 'slow@example.net',
            action: 'delayed',
            status: '4.4.1',
            lastAttemptAt: T0,
            willRetryUntil: T0 + 5 * 86_400_000,
          },
        ],
      }),
    );
    const mail = await simpleParser(raw, { keepDeliveryStatus: true });
    expect(mail.subject).toBe('Delayed Mail (still being retried)');
    expect(mail.text).toContain('THIS IS A WARNING ONLY');
    const status = mail.attachments[0]!.content.toString();
    expect(status).toContain('Action: delayed\r\nStatus: 4.4.1\r\n');
    expect(status).toContain('Will-Retry-Until: Sun, 06 Dec 2026 10:00:00 +0000');
  });

  test('internationalized recipients use address type utf-8; long diagnostics are clipped', () => {
    const raw = composeDsn(
      input({
        recipients: [
          {
            recipient: 'jörg@exämple.org',
            action: 'failed',
            status: '5.0.0',
            diagnostic: { type: 'smtp', text: '550 ' + 'x'.repeat(2000) },
          },
        ],
      }),
    );
    expect(raw).toContain('Final-Recipient: utf-8; jörg@exämple.org');
    expect(Math.max(...raw.split('\r\n').map((l) => l.length))).toBeLessThan(998);
    expect(raw).toContain('charset=utf-8');
  });
});

describe('headerSection', () => {
  test('stops at the first empty line (CRLF or LF)', () => {
    expect(headerSection(Buffer.from('A: 1\r\nB: 2\r\n\r\nbody\r\n\r\n'))).toEqual({
      headers: 'A: 1\r\nB: 2',
      complete: true,
    });
    expect(headerSection(Buffer.from('A: 1\nB: 2\n\nbody'))).toEqual({
      headers: 'A: 1\nB: 2',
      complete: true,
    });
  });
  test('a message without headers has an empty header section', () => {
    expect(headerSection(Buffer.from('\r\nbody'))).toEqual({ headers: '', complete: true });
  });
  test('a truncated header section is cut at its last full line', () => {
    expect(headerSection(Buffer.from('A: 1\r\nB: 2\r\nC: trunc'))).toEqual({
      headers: 'A: 1\r\nB: 2',
      complete: false,
    });
  });
});

test('rfc5322Date', () => {
  expect(rfc5322Date(Date.UTC(2027, 0, 2, 3, 4, 5))).toBe('Sat, 02 Jan 2027 03:04:05 +0000');
});
