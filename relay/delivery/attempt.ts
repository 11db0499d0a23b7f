/**
 * One delivery attempt for one destination group of a message: find where to connect (the smarthost,
 * or the recipient domain's MX hosts), send over a pooled connection, and turn the answer into one
 * outcome per recipient.
 *
 * Direct mode tries the MX addresses in order and moves to the next one only when the failure was
 * about the host (connection refused, timeout, greeting or TLS trouble, 421); once a server has judged
 * the transaction (MAIL/RCPT/DATA replies) the attempt ends there, so no recipient is sent twice in
 * one attempt. A connection lost after the whole body was sent also ends it (deferred): the server
 * may have the message already. Smarthost mode has exactly one host.
 *
 * A damaged spool body (checksum mismatch) is not a delivery outcome: CorruptEntryError is rethrown
 * for the queue manager to set the message aside.
 */
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { SmarthostConfig } from '../config/schema.js';
import type { Envelope } from '../spool/envelope.js';
import { CorruptEntryError } from '../spool/spool.js';
import { planDirect, type MailHostsLookup } from './mx.js';
import {
  localBounce,
  localDeferral,
  isHostLevel,
  outcomesFromError,
  outcomesFromInfo,
  type RecipientOutcome,
  type SmtpErrorLike,
} from './replies.js';
import type { DeliveryGroup } from './router.js';
import type { ConnectionLimits, SmtpTarget, TransportPool } from './transport.js';

export interface AttemptDeps {
  resolver: MailHostsLookup;
  transport: Pick<TransportPool, 'send'>;
  /** Port of MX hosts (delivery.directPort). */
  directPort: () => number;
}

/** What is sent: the original envelope and a fresh body stream per connection tried. */
export interface OutgoingMessage {
  id: string;
  envelope: Envelope;
  /** Body bytes (with the DKIM signature, when there is one), for SIZE=. */
  size: number;
  openBody: () => Readable;
}

export async function deliverGroup(
  deps: AttemptDeps,
  msg: OutgoingMessage,
  group: DeliveryGroup,
  signal?: AbortSignal,
  limits?: ConnectionLimits,
): Promise<RecipientOutcome[]> {
  const { destination, recipients } = group;
  if (destination.kind === 'smarthost') {
    const target = await smarthostTarget(destination.smarthost).catch((err: Error) => err);
    if (target instanceof Error)
      return recipients.map((r) => localDeferral(r, '4.3.5', `smarthost configuration: ${target.message}`));
    return sendTo([target], deps, msg, recipients, signal, limits);
  }
  const plan = await planDirect(deps.resolver, destination.domain);
  if (plan.kind === 'bounce') return recipients.map((r) => localBounce(r, plan.status, plan.reason));
  if (plan.kind === 'defer') return recipients.map((r) => localDeferral(r, plan.status, plan.reason));
  const port = deps.directPort();
  const targets: SmtpTarget[] = plan.addresses.map((a) => ({
    host: a.address,
    port,
    name: a.host,
    servername: a.host,
    tls: 'opportunistic',
  }));
  return sendTo(targets, deps, msg, recipients, signal, limits);
}

async function sendTo(
  targets: SmtpTarget[],
  deps: AttemptDeps,
  msg: OutgoingMessage,
  recipients: string[],
  signal: AbortSignal | undefined,
  limits: ConnectionLimits | undefined,
): Promise<RecipientOutcome[]> {
  let last: RecipientOutcome[] = [];
  for (const target of targets) {
    const envelope = {
      from: msg.envelope.mailFrom,
      to: recipients,
      size: msg.size,
      eightBit: msg.envelope.bodyType === '8BITMIME',
    };
    const body = msg.openBody();
    let bodySent = false;
    body.once('end', () => (bodySent = true));
    try {
      const info = await deps.transport.send(target, envelope, body, signal, limits);
      return outcomesFromInfo(recipients, info, target.name);
    } catch (e) {
      if (e instanceof CorruptEntryError) throw e;
      const err = e as SmtpErrorLike;
      if (bodySent && isHostLevel(err)) {
        // The whole message went out and the reply was lost: the server may have taken it. Another MX
        // now would make a duplicate certain; retry later instead (Postfix: "may be sent more than once").
        return recipients.map((r) =>
          localDeferral(
            r,
            '4.4.2',
            `lost connection after the message was sent (it may arrive twice): ${err.message}`,
            target.name,
          ),
        );
      }
      last = outcomesFromError(recipients, err, target.name);
      if (!isHostLevel(err) || signal?.aborted) return last;
    }
  }
  return last;
}

/** The smarthost as a transport target; credentials and CA are read from their files each time. */
async function smarthostTarget(s: SmarthostConfig): Promise<SmtpTarget> {
  const ca = s.caFile ? await fs.readFile(s.caFile, 'utf8') : undefined;
  const auth = s.auth
    ? {
        user: (await fs.readFile(s.auth.usernameFile, 'utf8')).trim(),
        pass: (await fs.readFile(s.auth.passwordFile, 'utf8')).replace(/\r?\n$/, ''),
      }
    : undefined;
  return {
    host: s.host,
    port: s.port,
    name: s.host,
    tls: s.tls,
    ...(ca ? { ca } : {}),
    ...(auth ? { auth } : {}),
  };
}
