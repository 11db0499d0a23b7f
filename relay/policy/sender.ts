/**
 * Sender policy: who may use which MAIL FROM on which listener. Pure: (request, domain index) → decision.
 *
 * Rules, in order (the first that fails decides):
 *  1. A peer relay handing over queued mail (AUTH as handoff.username) keeps its envelope: accepted
 *     as is, the null sender included.
 *  2. submission/smtps: the session must be authenticated (530 5.7.0).
 *     relay: the client must be in allowedNetworks (550 5.7.1) — the connect check already refused
 *     outsiders with 554; this is defence in depth.
 *  3. The address must be valid (501 5.1.7); a non-ASCII local part needs SMTPUTF8 (553 5.6.7);
 *     the null sender is refused (550 5.7.1).
 *  4. Its domain must be one of config.domains, compared in lower-case A-label form, exact match
 *     only — a subdomain is a different domain (550 5.7.1).
 *  5. With AUTH: the user must be in the domain's allowedUsers, or allowedUsers contains "*" (550 5.7.1).
 *  6. When the domain lists allowedSenders patterns, the address must match one (550 5.7.1), on
 *     every listener.
 */
import type { ListenerName, MailDomainConfig } from '../config/schema.js';
import type { MessageRejectReason } from '../metrics.js';
import { canonicalAddress, parseMailbox, asciiDomain } from './address.js';
import { Replies, type Reply } from './replies.js';

export interface DomainPolicy {
  readonly name: string;
  readonly allowedUsers: ReadonlySet<string>;
  readonly anyUser: boolean;
  readonly senderPatterns: readonly RegExp[];
  readonly config: MailDomainConfig;
}

/** Domains keyed by lower-case A-label name. */
export type DomainIndex = ReadonlyMap<string, DomainPolicy>;

/** "*" matches any run of characters; everything else is literal; case-insensitive; whole address. */
export function senderPattern(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 'i');
}

export function buildDomainIndex(domains: readonly MailDomainConfig[]): DomainIndex {
  const index = new Map<string, DomainPolicy>();
  for (const d of domains) {
    const name = asciiDomain(d.name) ?? d.name.toLowerCase();
    index.set(name, {
      name,
      allowedUsers: new Set(d.allowedUsers.filter((u) => u !== '*')),
      anyUser: d.allowedUsers.includes('*'),
      senderPatterns: d.allowedSenders.map(senderPattern),
      config: d,
    });
  }
  return index;
}

export interface SenderRequest {
  /** MAIL FROM address as parsed by smtp-server ('' is the null sender). */
  mailFrom: string;
  listener: ListenerName;
  /** AUTH identity, if the session authenticated. */
  authUser?: string;
  /** The session authenticated as the handoff (peer relay) identity. */
  handoff: boolean;
  /** Relay listener only: the client address is inside allowedNetworks. */
  clientAllowed: boolean;
  /** MAIL FROM carried SMTPUTF8. */
  smtputf8: boolean;
}

export type SenderDecision =
  | { ok: true; address: string; domain?: DomainPolicy }
  | { ok: false; reason: MessageRejectReason; reply: Reply };

const reject = (reason: MessageRejectReason, reply: Reply): SenderDecision => ({ ok: false, reason, reply });

export function checkSender(req: SenderRequest, domains: DomainIndex): SenderDecision {
  if (req.handoff) {
    const parsed = req.mailFrom === '' ? undefined : parseMailbox(req.mailFrom);
    const address = typeof parsed === 'object' ? canonicalAddress(parsed) : req.mailFrom;
    return { ok: true, address };
  }
  if (req.listener === 'relay') {
    if (!req.clientAllowed) return reject('not_authenticated', Replies.relayDenied);
  } else if (req.authUser === undefined) {
    return reject('not_authenticated', Replies.authRequired);
  }
  if (req.mailFrom === '') return reject('sender_syntax', Replies.nullSenderNotAllowed);
  const mailbox = parseMailbox(req.mailFrom);
  if (typeof mailbox === 'string') return reject('sender_syntax', Replies.senderSyntax);
  if (mailbox.utf8Local && !req.smtputf8) return reject('sender_syntax', Replies.senderNeedsSmtputf8);
  const domain = domains.get(mailbox.domain);
  if (!domain) return reject('sender_domain', Replies.senderDomainNotConfigured);
  const address = canonicalAddress(mailbox);
  if (req.authUser !== undefined && !domain.anyUser && !domain.allowedUsers.has(req.authUser))
    return reject('sender_not_allowed', Replies.senderNotAllowed);
  if (domain.senderPatterns.length > 0 && !domain.senderPatterns.some((p) => p.test(address)))
    return reject('sender_not_allowed', Replies.senderNotAllowed);
  return { ok: true, address, domain };
}
