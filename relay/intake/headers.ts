/**
 * Header fix-ups at intake, as pure functions: the Received trace header (RFC 5321 §4.4), and Date and
 * Message-ID for a submitted message that lacks them (RFC 6409 §8.2, §8.3).
 *
 * Only the header section is ever parsed, and only far enough to know which fields are present:
 * scanHeaderSection() reads lines until the empty line (or the first line that is not a header field,
 * where a sloppy client's body begins without one). Callers bound how many bytes they hand it.
 * Everything the relay adds is prepended, so the message's own bytes pass through untouched.
 */
import { randomBytes } from 'node:crypto';

export interface HeaderScan {
  /** true once the end of the header section was seen. */
  complete: boolean;
  /** Lower-case names of the fields seen so far. */
  fields: Set<string>;
  /** Bytes of header section seen so far (when complete: its size, the empty line not included). */
  size: number;
}

const FIELD_NAME = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;

/**
 * Scans the start of a message. With `final` (the whole message is in `buf`), a last line without a
 * line break counts as a line.
 */
export function scanHeaderSection(buf: Buffer, final = false): HeaderScan {
  const fields = new Set<string>();
  let pos = 0;
  let inField = false;
  while (pos < buf.length) {
    let nl = buf.indexOf(0x0a, pos);
    if (nl < 0) {
      // The partial last line counts, but not a lone CR that may begin the empty line.
      if (!final)
        return { complete: false, fields, size: buf.length - (buf[buf.length - 1] === 0x0d ? 1 : 0) };
      nl = buf.length;
    }
    const end = nl > pos && buf[nl - 1] === 0x0d ? nl - 1 : nl;
    const done = { complete: true, fields, size: pos };
    if (end === pos) return done; // the empty line
    const first = buf[pos];
    if (first === 0x20 || first === 0x09) {
      if (!inField) return done; // continuation with nothing to continue: the body starts here
    } else {
      const m = FIELD_NAME.exec(buf.toString('latin1', pos, Math.min(end, pos + 1000)));
      if (!m) return done; // not a header field: the body starts here
      fields.add(m[1]!.toLowerCase());
      inField = true;
    }
    pos = nl + 1;
  }
  return { complete: final, fields, size: buf.length };
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const pad = (n: number) => String(n).padStart(2, '0');

/** RFC 5322 §3.3 date-time in UTC: "Tue, 24 Nov 2026 02:57:35 +0000". */
export function formatDate(ms: number): string {
  const d = new Date(ms);
  return (
    `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

/** "<time.random@hostname>" — unique without coordination (RFC 5322 §3.6.4). */
export function newMessageIdValue(hostname: string, ms: number, random: Buffer = randomBytes(9)): string {
  return `<${ms.toString(36)}.${random.toString('hex')}@${hostname}>`;
}

/** Characters allowed in a HELO name copied into a header; anything else would break its syntax. */
function safeHelo(helo: string | undefined): string | undefined {
  if (!helo) return undefined;
  const cleaned = helo.replace(/[^A-Za-z0-9.:_[\]-]/g, '?').slice(0, 255);
  return cleaned || undefined;
}

function addressLiteral(ip: string): string {
  const plain = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
  return plain.includes(':') ? `[IPv6:${plain}]` : `[${plain}]`;
}

export interface ReceivedInfo {
  /** EHLO/HELO argument of the client. */
  helo?: string;
  clientAddress: string;
  /** This relay's hostname. */
  by: string;
  /** RFC 3848 protocol: SMTP, ESMTP, ESMTPA, ESMTPS, ESMTPSA. */
  protocol: string;
  /** An identifier of this transaction (the SMTP session id), for matching logs. */
  id: string;
  /** "TLSv1.3" and cipher name, when the session is encrypted. */
  tls?: { version: string; cipher: string };
  /** The one recipient, when there is exactly one (a list would disclose Bcc recipients). */
  recipient?: string;
  date: number;
}

/**
 * The Received header, folded, ending in CRLF:
 *   Received: from client.example ([192.0.2.1])
 *   	(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
 *   	by relay.example (mailfleet) with ESMTPSA id 1a2b3c
 *   	for <rcpt@example.net>; Tue, 24 Nov 2026 02:57:35 +0000
 */
export function receivedHeader(r: ReceivedInfo): string {
  const literal = addressLiteral(r.clientAddress);
  const helo = safeHelo(r.helo);
  const lines = [`Received: from ${helo ?? literal} (${literal})`];
  if (r.tls) lines.push(`\t(using ${r.tls.version} with cipher ${r.tls.cipher})`);
  lines.push(`\tby ${r.by} (mailfleet) with ${r.protocol} id ${r.id}`);
  const when = formatDate(r.date);
  if (r.recipient && !/[<>\r\n]/.test(r.recipient)) lines.push(`\tfor <${r.recipient}>; ${when}`);
  else lines[lines.length - 1] += `; ${when}`;
  return lines.join('\r\n') + '\r\n';
}

/** The header lines to prepend, given what the message has. */
export function prelude(opts: {
  received: string;
  fields: ReadonlySet<string>;
  /** Add Date and Message-ID when missing (submission); false keeps the message as is (handoff). */
  fixups: boolean;
  hostname: string;
  now: number;
}): string {
  let out = opts.received;
  if (!opts.fixups) return out;
  if (!opts.fields.has('date')) out += `Date: ${formatDate(opts.now)}\r\n`;
  if (!opts.fields.has('message-id')) out += `Message-ID: ${newMessageIdValue(opts.hostname, opts.now)}\r\n`;
  return out;
}
