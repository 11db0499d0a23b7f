/**
 * What a downstream server's answer means for each recipient (pure).
 *
 * Rules (RFC 5321 reply classes, Postfix's practice for the rest):
 * - 2xx → delivered; 4xx → deferred; 5xx → bounced. 503 (bad sequence) is a protocol problem, not a
 *   verdict on the recipient, so it defers.
 * - Replies to MAIL FROM, RCPT TO and DATA judge the recipients of that transaction. Anything that goes
 *   wrong before a transaction starts (connect, greeting, EHLO, STARTTLS, AUTH, timeouts, dropped
 *   connections) is about the host, not the mail: it defers, and in direct mode the next MX host is
 *   tried. Even a 5xx greeting or a refused AUTH only defers: our credentials or a broken host must not
 *   bounce a sender's mail.
 * - The enhanced status code (RFC 3463) comes from the reply when it has one, else from its class.
 *
 * Limitation: when the final reply to DATA fails, nodemailer does not say which recipients had been
 * refused at RCPT earlier, so the DATA reply is applied to every recipient of the transaction.
 */

export type RecipientResult = 'delivered' | 'deferred' | 'bounced';

export interface RecipientOutcome {
  recipient: string;
  result: RecipientResult;
  /** Enhanced status code, e.g. "5.1.1". */
  status: string;
  /** The downstream reply ("550 5.1.1 No such user") or, for local errors, what went wrong. */
  reply: string;
  /** true when `reply` is what the remote server said (a DSN's "Diagnostic-Code: smtp; …"). */
  fromRemote: boolean;
  /** The host that answered, when one did. */
  remoteMta?: string;
}

/** The part of a nodemailer error this module reads. */
export interface SmtpErrorLike {
  message: string;
  code?: string;
  command?: string;
  response?: string;
  responseCode?: number;
  recipient?: string;
  rejectedErrors?: SmtpErrorLike[];
}

/** The part of a nodemailer send result this module reads. */
export interface SendInfoLike {
  accepted: string[];
  rejected: string[];
  rejectedErrors?: SmtpErrorLike[];
  response: string;
}

const TRANSACTION_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

/** The enhanced status code of a reply, or the class default (2.0.0, 4.0.0, 5.0.0). */
export function enhancedStatus(reply: string): string {
  const m = /^([245])\d\d[ -]([245]\.\d{1,3}\.\d{1,3})(?:\s|$)/.exec(reply.trim());
  if (m && m[1] === m[2]![0]) return m[2]!;
  const cls = reply.trim()[0];
  return cls === '2' || cls === '4' || cls === '5' ? `${cls}.0.0` : '4.0.0';
}

/** Result for a recipient given the reply code that judged it. */
export function resultOfCode(code: number): RecipientResult {
  if (code >= 200 && code < 300) return 'delivered';
  if (code >= 500 && code < 600 && code !== 503) return 'bounced';
  return 'deferred';
}

function replyCode(reply: string): number {
  const m = /^(\d{3})/.exec(reply.trim());
  return m ? Number(m[1]) : 0;
}

/** Outcome of one recipient from a downstream reply. */
export function fromReply(recipient: string, reply: string, remoteMta?: string): RecipientOutcome {
  const text = oneLine(reply);
  const result = resultOfCode(replyCode(text));
  let status = enhancedStatus(text);
  if (result === 'deferred' && status[0] !== '4') status = '4' + status.slice(1);
  return { recipient, result, status, reply: text, fromRemote: true, ...(remoteMta ? { remoteMta } : {}) };
}

/** A deferral for a local reason (connection failure, DNS trouble, TLS policy…). */
export function localDeferral(
  recipient: string,
  status: string,
  reason: string,
  remoteMta?: string,
): RecipientOutcome {
  return {
    recipient,
    result: 'deferred',
    status,
    reply: oneLine(reason),
    fromRemote: false,
    ...(remoteMta ? { remoteMta } : {}),
  };
}

/** A permanent failure for a local reason (null MX, no such domain…). */
export function localBounce(recipient: string, status: string, reason: string): RecipientOutcome {
  return { recipient, result: 'bounced', status, reply: oneLine(reason), fromRemote: false };
}

/** Per-recipient outcomes of a send the server answered (some recipients may have been refused). */
export function outcomesFromInfo(
  recipients: string[],
  info: SendInfoLike,
  remoteMta: string,
): RecipientOutcome[] {
  const refused = new Map<string, SmtpErrorLike>();
  for (const e of info.rejectedErrors ?? []) if (e.recipient) refused.set(e.recipient, e);
  const accepted = new Set(info.accepted);
  return recipients.map((r) => {
    if (accepted.has(r)) return fromReply(r, info.response || '250 2.0.0 OK', remoteMta);
    const err = refused.get(r);
    if (err?.response) return fromReply(r, err.response, remoteMta);
    return localDeferral(r, '4.0.0', 'recipient not accepted by the server', remoteMta);
  });
}

/** true when the error is about the host (try the next one), not about this transaction. */
export function isHostLevel(err: SmtpErrorLike): boolean {
  if (err.responseCode === 421) return true;
  return !(err.command && TRANSACTION_COMMANDS.has(err.command) && err.responseCode);
}

/** Per-recipient outcomes of a send that failed. */
export function outcomesFromError(
  recipients: string[],
  err: SmtpErrorLike,
  remoteMta?: string,
): RecipientOutcome[] {
  if (isHostLevel(err)) {
    const status = hostErrorStatus(err);
    const reason = err.response ? `${describe(err)}: ${err.response}` : describe(err);
    return recipients.map((r) => localDeferral(r, status, reason, remoteMta));
  }
  if (err.rejectedErrors?.length) {
    // Every recipient was refused at RCPT: each has its own reply.
    return outcomesFromInfo(
      recipients,
      { accepted: [], rejected: recipients, rejectedErrors: err.rejectedErrors, response: '' },
      remoteMta ?? '',
    );
  }
  return recipients.map((r) => fromReply(r, err.response!, remoteMta));
}

/** RFC 3463 status for a failure that is not a verdict on the mail. */
function hostErrorStatus(err: SmtpErrorLike): string {
  switch (err.code) {
    case 'ETIMEDOUT':
      return '4.4.2'; // bad connection
    case 'EDNS':
      return '4.4.3'; // directory server failure
    case 'ETLS':
    case 'EREQUIRETLS':
      return '4.7.5'; // cryptographic failure
    case 'EAUTH':
    case 'ENOAUTH':
      return '4.7.0';
    default:
      return err.responseCode ? '4.4.0' : '4.4.1'; // no answer from host
  }
}

function describe(err: SmtpErrorLike): string {
  const what = err.message.replace(/:\s*\d{3}[\s\S]*$/, '');
  return err.code ? `${what} (${err.code})` : what;
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}
