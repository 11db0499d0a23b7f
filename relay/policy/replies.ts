/**
 * Every SMTP reply the relay composes itself, with its enhanced status code (RFC 3463, RFC 2034).
 *
 * One catalogue, so a reply code is chosen in exactly one place: no module writes a reply inline.
 * docs/relay-smtp.md's reply table is generated from it (relay/policy/replies-reference.ts, which also
 * lists the replies smtp-server composes on its own), and a unit test fails when the doc is stale.
 * A Reply is plain data; `replyError` turns it into the Error shape smtp-server's callbacks expect
 * (`responseCode` + message), with the enhanced code leading the text. The SMTP layer
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

/** A copy of a reply with a detail appended to its text ("…: FOO"); the code stays the catalogue's. */
export function withDetail(r: Reply, detail: string): Reply {
  return { ...r, text: `${r.text}: ${detail}` };
}

/** The text of a 250 after DATA, without the basic code (smtp-server adds "250"). */
export function queuedText(id: string): string {
  return `${Replies.queued.enhanced} ${Replies.queued.text} ${id}`;
}

export const Replies = {
  // Connection
  clientNotAllowed: reply(554, '5.7.1', 'Access denied: this listener accepts only configured networks'),
  tooManyConnections: reply(421, '4.3.2', 'Too many connections, try again later'),
  clientTooManyConnections: reply(421, '4.7.0', 'Too many connections from your address, try again later'),
  clientConnectionRate: reply(
    421,
    '4.7.0',
    'Connection rate limit exceeded for your address, try again later',
  ),
  shuttingDown: reply(421, '4.3.2', 'Service shutting down, try again later'),
  proxyHeaderInvalid: reply(421, '4.7.0', 'PROXY protocol header missing or invalid'),
  proxyHeaderUntrusted: reply(554, '5.7.1', 'PROXY protocol header not accepted from this address'),

  // AUTH
  authTlsRequired: reply(530, '5.7.0', 'Must issue a STARTTLS command first'),
  authFailed: reply(535, '5.7.8', 'Authentication credentials invalid'),
  authLockedOut: reply(454, '4.7.0', 'Too many failed authentication attempts, try again later'),

  // MAIL FROM
  authRequired: reply(530, '5.7.0', 'Authentication required'),
  relayDenied: reply(550, '5.7.1', 'Relaying denied: client network not allowed'),
  senderSyntax: reply(501, '5.1.7', 'Bad sender address syntax'),
  senderNotUtf8: reply(501, '5.1.7', 'Sender address is not valid UTF-8'),
  senderNeedsSmtputf8: reply(553, '5.6.7', 'Non-ASCII sender address requires SMTPUTF8'),
  mailParameterNotUtf8: reply(501, '5.5.4', 'MAIL FROM parameters are not valid UTF-8'),
  mailParameterNotSupported: reply(555, '5.5.4', 'MAIL FROM parameter not supported'),
  nullSenderNotAllowed: reply(550, '5.7.1', 'Null sender not allowed here'),
  senderDomainNotConfigured: reply(550, '5.7.1', 'Sender domain is not a mail domain of this relay'),
  senderNotAllowed: reply(550, '5.7.1', 'Sender address not allowed for this user'),
  rateLimited: reply(450, '4.7.1', 'Message rate limit exceeded, try again later'),

  // RCPT TO
  needMail: reply(503, '5.5.1', 'Error: need MAIL command'),
  recipientSyntax: reply(501, '5.1.3', 'Bad recipient address syntax'),
  recipientNotUtf8: reply(501, '5.1.3', 'Recipient address is not valid UTF-8'),
  recipientNeedsSmtputf8: reply(553, '5.6.7', 'Non-ASCII recipient address requires SMTPUTF8'),
  rcptParameterNotUtf8: reply(501, '5.5.4', 'RCPT TO parameters are not valid UTF-8'),
  rcptParameterNotSupported: reply(555, '5.5.4', 'RCPT TO parameter not supported'),
  tooManyRecipients: reply(452, '4.5.3', 'Too many recipients'),
  recipientNullMx: reply(556, '5.1.10', 'Recipient domain does not accept mail (null MX)'),
  recipientSuppressed: reply(
    550,
    '5.1.1',
    'Recipient is suppressed: an earlier delivery to it failed permanently',
  ),
  recipientNxDomain: reply(550, '5.1.2', 'Recipient domain does not exist'),
  recipientNoMailHost: reply(550, '5.1.2', 'Recipient domain has no MX, A or AAAA record'),
  recipientDnsTempFail: reply(
    451,
    '4.4.3',
    'Temporary DNS failure checking the recipient domain, try again later',
  ),

  // DATA
  needRcpt: reply(503, '5.5.1', 'Error: need RCPT command'),
  messageTooBig: reply(552, '5.3.4', 'Message size exceeds the fixed limit'),
  headerTooBig: reply(552, '5.3.4', 'Message header section exceeds the fixed limit'),
  bareCr: reply(554, '5.6.0', 'Message contains a bare CR: lines must end in CRLF'),
  nulByte: reply(554, '5.6.0', 'Message contains a NUL character'),
  spoolError: reply(451, '4.3.0', 'Local error queueing the message, try again later'),
  // MAIL, RCPT or DATA: the spool's file system is below its free-space floor, or full (RFC 3463 X.3.1)
  spoolFull: reply(452, '4.3.1', 'Insufficient system storage, try again later'),
  queued: reply(250, '2.0.0', 'Ok: queued as'),

  // Any command
  internalError: reply(451, '4.3.0', 'Local error in processing, try again later'),

  // VRFY / EXPN
  vrfySyntax: reply(501, '5.5.4', 'Syntax: VRFY address'),
  vrfyNotDisclosed: reply(252, '2.5.0', 'Cannot VRFY user, but will accept message and attempt delivery'),
  expnDisabled: reply(502, '5.5.1', 'EXPN not available'),
} as const satisfies Record<string, Reply>;

export type ReplyName = keyof typeof Replies;
