/**
 * Recipient policy: syntax, count, and whether the recipient's domain accepts mail. Pure: the DNS answer
 * is gathered elsewhere (relay/dns) and passed in.
 *
 *  - Syntax: a full address with a valid domain (501 5.1.3). Address literals ("user@[192.0.2.1]") and
 *    the bare "postmaster" are refused: this relay has no local mailboxes and only forwards by domain.
 *    A non-ASCII local part needs SMTPUTF8 (553 5.6.7).
 *  - Count: at most limits.maxRecipients distinct recipients (452 4.5.3; RFC 5321 §4.5.3.1.10 says the
 *    client then sends the rest in another transaction). Repeating a recipient does not count twice;
 *    "the same" compares canonical addresses: the local part byte for byte (only the receiving system
 *    may decide that "DUP" and "dup" are one mailbox, RFC 5321 §2.4), the domain without case.
 *  - Domain (RFC 5321 §5.1): MX records, else an A/AAAA record (implicit MX) → accept. Null MX
 *    (RFC 7505) → 556 5.1.10. NXDOMAIN, or no MX and no address → 550 5.1.2. Timeout, SERVFAIL or
 *    other DNS trouble → 451 4.4.3, so the client retries instead of bouncing.
 */
import type { RecipientRejectReason } from '../metrics.js';
import type { MailHosts } from '../dns/resolver.js';
import { canonicalAddress, parseMailbox, type Mailbox } from './address.js';
import { Replies, type Reply } from './replies.js';

export interface RecipientRejection {
  ok: false;
  reason: RecipientRejectReason;
  reply: Reply;
}
export type RecipientDecision = { ok: true } | RecipientRejection;

const reject = (reason: RecipientRejectReason, reply: Reply): RecipientRejection => ({
  ok: false,
  reason,
  reply,
});

export function checkRecipientSyntax(
  address: string,
  smtputf8: boolean,
): { ok: true; mailbox: Mailbox; address: string } | RecipientRejection {
  const mailbox = parseMailbox(address);
  if (typeof mailbox === 'string') return reject('syntax', Replies.recipientSyntax);
  if (mailbox.utf8Local && !smtputf8) return reject('syntax', Replies.recipientNeedsSmtputf8);
  return { ok: true, mailbox, address: canonicalAddress(mailbox) };
}

/** `current` is the list accepted so far in this transaction. */
export function checkRecipientCount(
  current: readonly string[],
  address: string,
  maxRecipients: number,
): RecipientDecision {
  if (current.length >= maxRecipients && !current.includes(address))
    return reject('too_many', Replies.tooManyRecipients);
  return { ok: true };
}

export function recipientDomainDecision(hosts: MailHosts): RecipientDecision {
  switch (hosts.kind) {
    case 'mx':
    case 'implicit':
      return { ok: true };
    case 'null-mx':
      return reject('null_mx', Replies.recipientNullMx);
    case 'nxdomain':
      return reject('nxdomain', Replies.recipientNxDomain);
    case 'no-mail-host':
      return reject('no_mail_host', Replies.recipientNoMailHost);
    case 'tempfail':
      return reject('dns_tempfail', Replies.recipientDnsTempFail);
  }
}
