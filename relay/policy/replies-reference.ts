/**
 * The reply table of docs/relay-smtp.md, generated: every reply of the catalogue (replies.ts) with the
 * command and the condition it answers, plus the replies smtp-server composes itself that a client
 * meets (the relay does not reword them; test/integration/bad-input.test.ts pins their wire text, so a
 * library upgrade that changes one fails there). A unit test fails when the doc is stale;
 * `npm run docs:relay` rewrites it. REPLY_DOCS is typed over the catalogue's names, so a reply added
 * without its row does not compile.
 */
import { Replies, formatReply, type ReplyName } from './replies.js';
import { replaceGenerated } from '../config/reference.js';

export interface ReplyDoc {
  /** The command (or phase) the reply answers. */
  step: string;
  /** When the client gets it. */
  when: string;
  /** The wire form when the relay appends something to the catalogue text (placeholders in <>). */
  wire?: string;
}

/** In the order the checks are made. */
export const REPLY_DOCS: Record<ReplyName, ReplyDoc> = {
  proxyHeaderInvalid: {
    step: 'connect',
    when: 'from a trusted proxy of the listener (`proxyProtocol.trustedProxies`): no valid PROXY header within 5 s, or one cut short by a FIN (the connection is closed; see [PROXY protocol](#proxy-protocol))',
  },
  proxyHeaderUntrusted: {
    step: 'connect',
    when: 'a PROXY header from an address that is not a trusted proxy of the listener, on any listener (the connection is closed)',
  },
  shuttingDown: {
    step: 'connect, MAIL',
    when: 'the relay is shutting down or draining (idle sessions get it at once, then the connection closes)',
  },
  tooManyConnections: {
    step: 'connect',
    when: '`limits.maxConnections` connections are open (all listeners together)',
  },
  clientNotAllowed: { step: 'connect', when: 'relay listener: the client is outside `allowedNetworks`' },
  clientTooManyConnections: {
    step: 'connect',
    when: '`limits.maxConnectionsPerClient` connections are open from this client address (all listeners together), unless it is in `limits.exemptNetworks` (see [Per-client limits](#per-client-limits))',
  },
  clientConnectionRate: {
    step: 'connect',
    when: 'more than `limits.connectionsPerMinutePerClient` new connections in a minute from this client address, unless it is in `limits.exemptNetworks`',
  },
  authTlsRequired: { step: 'AUTH', when: 'submission: the session is not encrypted yet' },
  authLockedOut: {
    step: 'AUTH',
    when: 'the client address is locked out after repeated failures, also when the lockout began while this attempt was checked (the right password does not lift it)',
  },
  authFailed: { step: 'AUTH', when: 'user and password do not match the users file' },
  authRequired: { step: 'MAIL', when: 'submission/smtps: the session is not authenticated' },
  relayDenied: {
    step: 'MAIL',
    when: 'relay listener: the client is outside `allowedNetworks` (defence in depth)',
  },
  senderSyntax: {
    step: 'MAIL',
    when: 'the address is malformed (no angle brackets, no domain, an invalid or single-label domain, …)',
  },
  senderNotUtf8: {
    step: 'MAIL',
    when: 'the address has bytes that are not UTF-8 (with or without SMTPUTF8)',
  },
  senderNeedsSmtputf8: { step: 'MAIL', when: 'a non-ASCII local part came without the `SMTPUTF8` parameter' },
  mailParameterNotUtf8: { step: 'MAIL', when: 'a parameter has bytes that are not UTF-8' },
  mailParameterNotSupported: {
    step: 'MAIL',
    when: 'a parameter other than `SIZE`, `BODY`, `SMTPUTF8` (and `AUTH` where AUTH is offered), e.g. DSN’s `RET`/`ENVID`',
    wire: `${formatReply(Replies.mailParameterNotSupported)}: <NAME>`,
  },
  nullSenderNotAllowed: { step: 'MAIL', when: 'the null sender `<>`' },
  senderDomainNotConfigured: { step: 'MAIL', when: 'the domain is not one of `domains`' },
  senderNotAllowed: {
    step: 'MAIL',
    when: 'the user is not in the domain’s `allowedUsers` (nor is `"*"`), or the address matches no `allowedSenders` pattern',
  },
  spoolFull: {
    step: 'MAIL, RCPT, DATA',
    when: 'the spool’s file system is below its free-space floor (`spool.minFreeSpacePercent`, `spool.minFreeInodesPercent`); at MAIL also when the declared `SIZE=` would take it below; after the final `.` when the message itself took it below or the disk filled up while it was written (the message is removed; see [A full disk](#a-full-disk))',
  },
  rateLimited: {
    step: 'MAIL',
    when: 'messages per minute of this client address (unless it is in `limits.exemptNetworks`), of this user or of the sender’s domain exceeded (fleet-wide with `fleetStore`)',
  },
  needMail: { step: 'RCPT', when: 'no MAIL transaction is open' },
  recipientSyntax: {
    step: 'RCPT',
    when: 'the address is malformed, an address literal (`user@[192.0.2.1]`) or the bare `postmaster`',
  },
  recipientNotUtf8: { step: 'RCPT', when: 'the address has bytes that are not UTF-8' },
  recipientNeedsSmtputf8: { step: 'RCPT', when: 'a non-ASCII local part without `SMTPUTF8` on MAIL' },
  rcptParameterNotUtf8: { step: 'RCPT', when: 'a parameter has bytes that are not UTF-8' },
  rcptParameterNotSupported: {
    step: 'RCPT',
    when: 'any parameter, e.g. DSN’s `NOTIFY`/`ORCPT` (none is supported)',
    wire: `${formatReply(Replies.rcptParameterNotSupported)}: <NAME>`,
  },
  tooManyRecipients: {
    step: 'RCPT',
    when: 'more than `limits.maxRecipients` distinct recipients; send the rest in another transaction',
  },
  recipientNullMx: { step: 'RCPT', when: 'the domain has a null MX, `0 .` (RFC 7505)' },
  recipientSuppressed: {
    step: 'RCPT',
    when: 'the recipient is on the suppression list (a downstream rejected it with one of `suppression.codes` within `suppression.ttl`) and `suppression.action` is `refuse`',
    wire: `${formatReply(Replies.recipientSuppressed)}: until <ISO time>`,
  },
  recipientNxDomain: { step: 'RCPT', when: 'the domain does not exist (NXDOMAIN)' },
  recipientNoMailHost: { step: 'RCPT', when: 'the domain has no MX, no A and no AAAA record' },
  recipientDnsTempFail: { step: 'RCPT', when: 'DNS timeout, SERVFAIL or refusal while checking the domain' },
  needRcpt: { step: 'DATA', when: 'no recipient was accepted' },
  messageTooBig: {
    step: 'DATA',
    when: 'the message grew past `limits.maxMessageBytes` (counted while streaming; sent after the final `.`)',
  },
  headerTooBig: { step: 'DATA', when: 'the header section is over 256 KiB' },
  bareCr: { step: 'DATA', when: 'a CR not followed by LF, in the header section or the body' },
  nulByte: { step: 'DATA', when: 'a NUL byte, in the header section or the body' },
  spoolError: { step: 'DATA', when: 'the message could not be written and fsynced to the spool' },
  queued: {
    step: 'DATA',
    when: 'the message and its envelope are fsynced to the spool',
    wire: `${formatReply(Replies.queued)} <ID>`,
  },
  internalError: {
    step: 'any',
    when: 'an unexpected error inside the relay (logged as `internal error in session`)',
  },
  vrfySyntax: { step: 'VRFY', when: 'no argument' },
  vrfyNotDisclosed: { step: 'VRFY', when: 'any argument: the relay never discloses users' },
  expnDisabled: { step: 'EXPN', when: 'always' },
};

export interface LibraryReply {
  step: string;
  when: string;
  /** Exactly as on the wire (placeholders in <>). */
  wire: string;
}

/** Replies smtp-server composes, which a client of the relay meets as they are. */
export const LIBRARY_REPLIES = {
  greeting: { step: 'connect', when: 'the session is open', wire: '220 <hostname> ESMTP mailfleet' },
  sendHeloFirst: {
    step: 'MAIL, RCPT, DATA, AUTH',
    when: 'before EHLO/HELO',
    wire: '503 5.5.1 Error: send HELO/EHLO first',
  },
  mailAccepted: { step: 'MAIL', when: 'every check passed', wire: '250 2.1.0 Accepted' },
  nestedMail: {
    step: 'MAIL',
    when: 'a transaction is already open',
    wire: '503 5.5.1 Error: nested MAIL command',
  },
  sizeSyntax: {
    step: 'MAIL',
    when: '`SIZE=` is not a number',
    wire: '501 5.5.4 Error: Bad message size syntax',
  },
  sizeTooBig: {
    step: 'MAIL',
    when: '`SIZE=` declares more than `limits.maxMessageBytes`',
    wire: '552 5.3.4 Error: message exceeds fixed maximum message size <limit>',
  },
  bodyValue: {
    step: 'MAIL',
    when: '`BODY=` is neither `7BIT` nor `8BITMIME`',
    wire: '501 5.5.4 Invalid BODY parameter value. Must be 7BIT or 8BITMIME',
  },
  smtputf8Value: {
    step: 'MAIL',
    when: '`SMTPUTF8=` with a value',
    wire: '501 5.5.4 Invalid SMTPUTF8 parameter. This flag does not accept a value',
  },
  requireTlsPlain: {
    step: 'MAIL',
    when: '`REQUIRETLS` on an unencrypted session (encrypted, it gets the relay’s 555)',
    wire: '530 5.7.0 REQUIRETLS not permitted on non-TLS connections',
  },
  duplicateParameter: {
    step: 'MAIL, RCPT',
    when: 'a parameter given twice',
    wire: '501 5.5.4 Error: duplicate <NAME> parameter',
  },
  rcptAccepted: { step: 'RCPT', when: 'every check passed', wire: '250 2.1.5 Accepted' },
  dataGoAhead: {
    step: 'DATA',
    when: 'recipients were accepted',
    wire: '354 End data with <CR><LF>.<CR><LF>',
  },
  unknownAuthMechanism: {
    step: 'AUTH',
    when: 'a mechanism other than PLAIN and LOGIN',
    wire: '504 5.5.4 Error: Unrecognized authentication type',
  },
  authSucceeded: {
    step: 'AUTH',
    when: 'user and password match',
    wire: '235 2.7.0 Authentication successful',
  },
  notRecognized: {
    step: 'any',
    when: 'an unknown or disabled command',
    wire: '500 5.5.2 Error: command not recognized',
  },
  tooManyUnrecognized: {
    step: 'any',
    when: 'the tenth unknown command in a row (the connection is closed)',
    wire: '421 4.4.2 Error: too many unrecognized commands',
  },
  lineTooLong: {
    step: 'any',
    when: 'a command line over 16 KiB (the connection is closed)',
    wire: '421 4.4.2 Error: Command line too long',
  },
  httpRequest: {
    step: 'any',
    when: 'an HTTP request line (the connection is closed)',
    wire: '421 4.4.2 HTTP requests not allowed',
  },
  idleTimeout: {
    step: 'any',
    when: 'the client was silent for `limits.idleTimeout` seconds (the connection is closed)',
    wire: '421 4.4.2 Timeout - closing connection',
  },
  noop: { step: 'NOOP', when: 'always', wire: '250 2.0.0 OK' },
  rset: { step: 'RSET', when: 'always', wire: '250 2.0.0 Flushed' },
  quit: { step: 'QUIT', when: 'always; commands pipelined after it are ignored', wire: '221 2.0.0 Bye' },
} as const satisfies Record<string, LibraryReply>;

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function replyReferenceTable(): string {
  const out = ['| command | when | reply | composed by |', '|---|---|---|---|'];
  for (const [name, doc] of Object.entries(REPLY_DOCS) as [ReplyName, ReplyDoc][])
    out.push(`| ${doc.step} | ${cell(doc.when)} | \`${doc.wire ?? formatReply(Replies[name])}\` | relay |`);
  for (const r of Object.values(LIBRARY_REPLIES) as LibraryReply[])
    out.push(`| ${r.step} | ${cell(r.when)} | \`${r.wire}\` | smtp-server |`);
  return out.join('\n') + '\n';
}

export const REPLIES_BEGIN =
  '<!-- BEGIN generated from relay/policy/replies-reference.ts (npm run docs:relay); do not edit -->';
export const REPLIES_END = '<!-- END generated replies -->';

/** `doc` with the text between the markers replaced by the current table. */
export function withReplyReference(doc: string): string {
  return replaceGenerated(doc, REPLIES_BEGIN, REPLIES_END, replyReferenceTable(), 'reply table');
}
