/**
 * Delivery status notifications (pure): the bounce or delay notice sent back to a message's envelope
 * sender, composed as RFC 3464 says.
 *
 *   multipart/report; report-type=delivery-status
 *   ├─ text/plain                  what happened, for people
 *   ├─ message/delivery-status     Reporting-MTA, Arrival-Date, then per recipient: Final-Recipient,
 *   │                              Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date
 *   └─ text/rfc822-headers         the original message's header section (never its body)
 *
 * The caller sends it with a null envelope sender (MAIL FROM:<>) so it can never be bounced back
 * (RFC 5321 §4.5.5), and marks it Auto-Submitted (RFC 3834) so responders leave it alone.
 * Everything here is a function of its input (times, IDs and the MIME boundary are passed in), so it
 * is tested byte for byte.
 */

export type DsnKind = 'failure' | 'delay';

export interface DsnRecipient {
  recipient: string;
  action: 'failed' | 'delayed';
  /** Enhanced status code (RFC 3463), e.g. "5.1.1"; class 5 for failed, 4 for delayed. */
  status: string;
  /** Host that gave the answer. */
  remoteMta?: string;
  /** The remote server's reply (type smtp) or a local explanation (type X-mailfleet). */
  diagnostic?: { type: 'smtp' | 'X-mailfleet'; text: string };
  lastAttemptAt?: number;
  /** Delay notices: when the relay gives up. */
  willRetryUntil?: number;
}

export interface DsnInput {
  kind: DsnKind;
  /** The relay's hostname: Reporting-MTA and the From address's domain. */
  reportingMta: string;
  queueId: string;
  arrivalDate: number;
  /** The original envelope sender, to whom the notice goes. */
  to: string;
  recipients: DsnRecipient[];
  /** Header section of the original message (up to, not including, the empty line). */
  originalHeaders: string;
  now: number;
  messageId: string;
  boundary: string;
}

/** Longest diagnostic kept; the whole line must stay under RFC 5322's 998 characters. */
const MAX_DIAGNOSTIC = 900;

export function composeDsn(d: DsnInput): string {
  const subject =
    d.kind === 'failure' ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)';
  const headers = [
    `From: Mail Delivery System <MAILER-DAEMON@${d.reportingMta}>`,
    `To: <${d.to}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(d.now)}`,
    `Message-ID: ${d.messageId}`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="${d.boundary}"`,
  ];
  const human = humanPart(d);
  const parts = [
    part(
      [
        'Content-Description: Notification',
        `Content-Type: text/plain; charset=${isAscii(human) ? 'us-ascii' : 'utf-8'}`,
        `Content-Transfer-Encoding: ${isAscii(human) ? '7bit' : '8bit'}`,
      ],
      human,
    ),
    part(
      ['Content-Description: Delivery report', 'Content-Type: message/delivery-status'],
      deliveryStatus(d),
    ),
    part(
      ['Content-Description: Undelivered Message Headers', 'Content-Type: text/rfc822-headers'],
      withCrlf(d.originalHeaders).replace(/(\r\n)*$/, '\r\n'),
    ),
  ];
  return (
    headers.join('\r\n') +
    '\r\n\r\nThis is a MIME-encapsulated message.\r\n\r\n' +
    parts.map((p) => `--${d.boundary}\r\n${p}`).join('\r\n') +
    `\r\n--${d.boundary}--\r\n`
  );
}

function part(headers: string[], body: string): string {
  return headers.join('\r\n') + '\r\n\r\n' + body;
}

function humanPart(d: DsnInput): string {
  const lines =
    d.kind === 'failure'
      ? [
          `This is the mail system at host ${d.reportingMta}.`,
          '',
          "I'm sorry to have to inform you that your message could not",
          'be delivered to one or more recipients. It is attached below.',
          '',
          'The mail system',
          '',
        ]
      : [
          `This is the mail system at host ${d.reportingMta}.`,
          '',
          '####################################################################',
          '# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #',
          '####################################################################',
          '',
          'Your message could not be delivered yet. The mail system will keep',
          'trying' +
            (d.recipients[0]?.willRetryUntil
              ? ` until ${rfc5322Date(d.recipients[0].willRetryUntil)}.`
              : '.'),
          '',
          'The mail system',
          '',
        ];
  for (const r of d.recipients) {
    const why = r.diagnostic ? clip(r.diagnostic.text) : `status ${r.status}`;
    const host = r.remoteMta ? `host ${r.remoteMta} said: ` : '';
    lines.push(`<${r.recipient}>: ${host}${why}`);
  }
  return lines.join('\r\n') + '\r\n';
}

function deliveryStatus(d: DsnInput): string {
  const perMessage = [
    `Reporting-MTA: dns; ${d.reportingMta}`,
    `X-Mailfleet-Queue-ID: ${d.queueId}`,
    `Arrival-Date: ${rfc5322Date(d.arrivalDate)}`,
  ];
  const perRecipient = d.recipients.map((r) => {
    const f = [
      `Final-Recipient: ${addressType(r.recipient)}; ${r.recipient}`,
      `Action: ${r.action}`,
      `Status: ${r.status}`,
    ];
    if (r.remoteMta) f.push(`Remote-MTA: dns; ${r.remoteMta}`);
    if (r.diagnostic) f.push(`Diagnostic-Code: ${r.diagnostic.type}; ${clip(r.diagnostic.text)}`);
    if (r.lastAttemptAt !== undefined) f.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttemptAt)}`);
    if (r.willRetryUntil !== undefined) f.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    return f.join('\r\n') + '\r\n';
  });
  return [perMessage.join('\r\n') + '\r\n', ...perRecipient].join('\r\n');
}

/** RFC 6533: internationalized addresses are reported with address type utf-8. */
function addressType(address: string): string {
  return isAscii(address) ? 'rfc822' : 'utf-8';
}

function clip(text: string): string {
  const one = text.replace(/[\r\n]+/g, ' ');
  return one.length > MAX_DIAGNOSTIC ? one.slice(0, MAX_DIAGNOSTIC) + '...' : one;
}

function isAscii(s: string): boolean {
  return Buffer.byteLength(s, 'utf8') === s.length;
}

function withCrlf(s: string): string {
  return s.replace(/\r?\n/g, '\r\n');
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC, e.g. "Tue, 01 Dec 2026 10:00:00 +0000". */
export function rfc5322Date(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return (
    `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`
  );
}

/**
 * The header section at the start of a message: everything before the first empty line. `complete`
 * is false when no empty line was found in `head` (then all of `head` is returned).
 */
export function headerSection(head: Buffer): { headers: string; complete: boolean } {
  if (head[0] === 0x0a || (head[0] === 0x0d && head[1] === 0x0a)) return { headers: '', complete: true };
  const crlf = head.indexOf('\r\n\r\n');
  const lf = head.indexOf('\n\n');
  const ends = [crlf, lf].filter((i) => i >= 0);
  if (ends.length === 0) {
    // Cut at the last full line, so a truncated header section still reads as headers.
    const lastLine = head.lastIndexOf('\n');
    return {
      headers: head
        .subarray(0, lastLine < 0 ? 0 : lastLine)
        .toString('utf8')
        .replace(/\r$/, ''),
      complete: false,
    };
  }
  const end = Math.min(...ends);
  return { headers: head.subarray(0, end).toString('utf8'), complete: true };
}
