/**
 * MAIL FROM and RCPT TO parameters (RFC 5321 §4.1.2 esmtp-param): which the relay takes, pure.
 *
 * The relay implements exactly what it advertises, and refuses the rest with 555 5.5.4 (RFC 5321
 * §4.1.1.11: "MAIL FROM/RCPT TO parameters not recognized or not implemented"), so a client never
 * believes a parameter was honoured when it was dropped:
 *
 *   MAIL  SIZE=n         RFC 1870 (the library checks the number and the limit)
 *         BODY=7BIT|8BITMIME   RFC 6152 (the library checks the value)
 *         SMTPUTF8       RFC 6531
 *         AUTH=mailbox   RFC 4954 §5, only where AUTH is offered (submission, smtps): a server that
 *                        offers AUTH must accept it. Its value is not trusted or passed on (§5 lets a
 *                        server treat it as <>).
 *   RCPT  none
 *
 * DSN (RFC 3461: RET, ENVID, NOTIFY, ORCPT) is not offered, so its parameters are refused like any
 * other (docs/adr/0009-relay-client-input.md says why). Names are case-insensitive; the
 * library has already upper-cased them and refused duplicates and valueless SIZE/BODY (501 5.5.4).
 */
import { Replies, withDetail, type Reply } from './replies.js';

/** The parameters as smtp-server parsed them: upper-case name → value, or true for a bare keyword. */
export type Parameters = Readonly<Record<string, string | boolean>> | false | undefined;

export interface MailParameters {
  smtputf8: boolean;
  bodyType: '7BIT' | '8BITMIME';
  /** SIZE= as declared (the library has refused a malformed or too large one). */
  size?: number;
}

const MAIL = new Set(['SIZE', 'BODY', 'SMTPUTF8']);
/** esmtp-keyword (RFC 5321 §4.1.2): safe to echo in a reply. */
const KEYWORD = /^[A-Z0-9][A-Z0-9-]{0,31}$/;

function unsupported(reply: Reply, name: string): Reply {
  return KEYWORD.test(name) ? withDetail(reply, name) : reply;
}

export function checkMailParameters(
  args: Parameters,
  opts: { authOffered: boolean },
): { ok: true; params: MailParameters } | { ok: false; reply: Reply } {
  const all = args || {};
  for (const name of Object.keys(all)) {
    if (MAIL.has(name) || (name === 'AUTH' && opts.authOffered)) continue;
    return { ok: false, reply: unsupported(Replies.mailParameterNotSupported, name) };
  }
  const body = typeof all.BODY === 'string' ? all.BODY.toUpperCase() : undefined;
  const size = typeof all.SIZE === 'string' ? Number(all.SIZE) : undefined;
  return {
    ok: true,
    params: {
      smtputf8: all.SMTPUTF8 === true,
      bodyType: body === '8BITMIME' ? '8BITMIME' : '7BIT',
      ...(size !== undefined ? { size } : {}),
    },
  };
}

export function checkRcptParameters(args: Parameters): { ok: true } | { ok: false; reply: Reply } {
  const [name] = Object.keys(args || {});
  if (name === undefined) return { ok: true };
  return { ok: false, reply: unsupported(Replies.rcptParameterNotSupported, name) };
}
