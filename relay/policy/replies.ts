/**
 * Every SMTP reply the relay composes itself, with its enhanced status code (RFC 3463, RFC 2034).
 *
 * One catalogue, so a reply code is chosen in exactly one place and the docs (docs/relay-smtp.md) can be
 * checked against it. A Reply is plain data; `replyError` turns it into the Error shape smtp-server's
 * callbacks expect (`responseCode` + message), with the enhanced code leading the text. The SMTP layer
 * (relay/smtp/connection.ts) recognises a leading enhanced code and does not add one of its own.
 */

export interface Reply {
  /** Basic reply code (RFC 5321 §4.2). */
  code: number;
  /** Enhanced status code, class.subject.detail (RFC 3463). */
  enhanced: string;
  text: string;
}

const ENHANCED = /^[245]\.\d{1,3}\.\d{1,3}$/;

function reply(code: number, enhanced: string, text: string): Reply {
  if (!ENHANCED.test(enhanced) || String(code)[0] !== enhanced[0])
    throw new Error(`reply ${code} ${enhanced}: class of the enhanced code must match the reply code`);
  return { code, enhanced, text };
}

/** "550 5.7.1 text" — how the reply appears on the wire (single line). */
export function formatReply(r: Reply): string {
  return `${r.code} ${r.enhanced} ${r.text}`;
}

/** An Error carrying the reply, for smtp-server callbacks (`err.responseCode`, `err.message`). */
export class ReplyError extends Error {
  readonly responseCode: number;
  constructor(readonly reply: Reply) {
    super(`${reply.enhanced} ${reply.text}`);
    this.responseCode = reply.code;
  }
}

export function replyError(r: Reply): ReplyError {
  return new ReplyError(r);
}

/** The text of a 250 after DATA, without the basic code (smtp-server adds "250"). */
export function queuedText(id: string): string {
  return `2.0.0 Ok: queued as ${id}`;
}

export const Replies = {
  // Connection
  clientNotAllowed: reply(554, '5.7.1', 'Access denied: this listener accepts only configured networks'),
  tooManyConnections: reply(421, '4.3.2', 'Too many connections, try again later'),
  shuttingDown: reply(421, '4.3.2', 'Service shutting down, try again later'),

  // AUTH
  authTlsRequired: reply(530, '5.7.0', 'Must issue a STARTTLS command first'),
  authNotAvailable: reply(503, '5.5.1', 'AUTH not available on this listener'),
  authFailed: reply(535, '5.7.8', 'Authentication credentials invalid'),
  authLockedOut: reply(454, '4.7.0', 'Too many failed authentication attempts, try again later'),
  authTempFail: reply(454, '4.7.0', 'Temporary authentication failure'),

  // MAIL FROM
  authRequired: reply(530, '5.7.0', 'Authentication required'),
  relayDenied: reply(550, '5.7.1', 'Relaying denied: client network not allowed'),
  senderSyntax: reply(553, '5.1.7', 'Sender address syntax invalid'),
  senderNeedsSmtputf8: reply(553, '5.6.7', 'Non-ASCII sender address requires SMTPUTF8'),
  nullSenderNotAllowed: reply(550, '5.7.1', 'Null sender not allowed here'),
  senderDomainNotConfigured: reply(550, '5.7.1', 'Sender domain is not a mail domain of this relay'),
  senderNotAllowed: reply(550, '5.7.1', 'Sender address not allowed for this user'),
  rateLimited: reply(450, '4.7.1', 'Message rate limit exceeded, try again later'),

  // RCPT TO
  recipientSyntax: reply(553, '5.1.3', 'Recipient address syntax invalid'),
  recipientNeedsSmtputf8: reply(553, '5.6.7', 'Non-ASCII recipient address requires SMTPUTF8'),
  tooManyRecipients: reply(452, '4.5.3', 'Too many recipients'),
  recipientNullMx: reply(556, '5.1.10', 'Recipient domain does not accept mail (null MX)'),
  recipientNxDomain: reply(550, '5.1.2', 'Recipient domain does not exist'),
  recipientNoMailHost: reply(550, '5.1.2', 'Recipient domain has no MX, A or AAAA record'),
  recipientDnsTempFail: reply(
    451,
    '4.4.3',
    'Temporary DNS failure checking the recipient domain, try again later',
  ),

  // DATA
  messageTooBig: reply(552, '5.3.4', 'Message size exceeds the fixed limit'),
  headerTooBig: reply(552, '5.3.4', 'Message header section exceeds the fixed limit'),
  spoolError: reply(451, '4.3.0', 'Local error queueing the message, try again later'),
  // MAIL, RCPT or DATA: the spool's file system is below its free-space floor, or full (RFC 3463 X.3.1)
  spoolFull: reply(452, '4.3.1', 'Insufficient system storage, try again later'),

  // VRFY / EXPN
  vrfyNotDisclosed: reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'),
  expnDisabled: reply(502, '5.5.1', 'EXPN not available'),
} as const satisfies Record<string, Reply>;

/** A copy of a reply with more specific text (the code stays the catalogue's). */
export function withText(r: Reply, text: string): Reply {
  return { ...r, text };
}
