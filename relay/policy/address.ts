/**
 * Mailbox syntax for envelope addresses, as far as the relay needs it (RFC 5321 §4.1.2, RFC 6531).
 *
 * smtp-server has already done the coarse parse (angle brackets, one "@", no control characters) and
 * turned A-label domains into U-labels. Here the domain is brought back to its ASCII (A-label) form,
 * lower-cased, which is the form used for every comparison and DNS lookup, and the length limits are
 * checked. Pure functions.
 */
import { domainToASCII } from 'node:url';

export interface Mailbox {
  /** Local part as given (case preserved; only the receiving system may interpret it). */
  local: string;
  /** Domain in lower-case A-label form, e.g. "xn--bcher-kva.example". */
  domain: string;
  /** true when the local part has non-ASCII characters (needs SMTPUTF8). */
  utf8Local: boolean;
}

export type MailboxProblem = 'syntax' | 'address-literal' | 'no-domain';

const MAX_LOCAL_OCTETS = 64;
const MAX_PATH_OCTETS = 254; // 256 minus the angle brackets (RFC 5321 §4.5.3.1.3)
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Normalises a domain to lower-case A-labels; undefined when it is not a valid host name. */
export function asciiDomain(domain: string): string | undefined {
  const trimmed = domain.endsWith('.') ? domain.slice(0, -1) : domain;
  if (trimmed === '' || trimmed.startsWith('[')) return undefined;
  const ascii = domainToASCII(trimmed).toLowerCase();
  if (ascii === '' || ascii.length > 253) return undefined;
  const labels = ascii.split('.');
  if (labels.length < 2) return undefined;
  if (!labels.every((l) => LABEL.test(l))) return undefined;
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) return undefined; // a TLD is never all digits
  return ascii;
}

/** Parses an envelope address (without angle brackets). */
export function parseMailbox(address: string): Mailbox | MailboxProblem {
  const at = address.lastIndexOf('@');
  if (at < 0) return 'no-domain';
  const local = address.slice(0, at);
  const rawDomain = address.slice(at + 1);
  if (local === '' || rawDomain === '') return 'syntax';
  if (rawDomain.startsWith('[')) return 'address-literal';
  if (Buffer.byteLength(local, 'utf8') > MAX_LOCAL_OCTETS) return 'syntax';
  if (/[\s<>()\\,;]/.test(local) && !/^".*"$/.test(local)) return 'syntax';
  const domain = asciiDomain(rawDomain);
  if (domain === undefined) return 'syntax';
  if (Buffer.byteLength(local, 'utf8') + 1 + domain.length > MAX_PATH_OCTETS) return 'syntax';
  // eslint-disable-next-line no-control-regex
  return { local, domain, utf8Local: /[^\x00-\x7f]/.test(local) };
}

/** The address in its canonical form for storage and comparison: local part as given, A-label domain. */
export function canonicalAddress(m: Mailbox): string {
  return `${m.local}@${m.domain}`;
}
