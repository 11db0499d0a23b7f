/**
 * The suppression list at delivery: a recipient a downstream rejected permanently with one of
 * `suppression.codes` is put on the list (the fleet's, or this pod's without a store); with
 * `suppression.action: bounce` a suppressed recipient of a queued message fails at once, without a
 * connection. (With `refuse`, the default, the session refuses it at RCPT and it never gets queued.)
 *
 * Invariants
 * - Only the downstream's own reply suppresses (`fromRemote`): a local failure (routing, a null MX
 *   found at delivery, an expired message) says nothing about the mailbox.
 * - Bounce outcomes of suppressed recipients are ordinary outcomes: the queue manager records them and
 *   the DSN says why, like any other permanent failure.
 * - A list that cannot be read or written never holds mail back: the facade answers locally then.
 */
import type { SuppressionConfig } from '../config/schema.js';
import type { RelayMetrics } from '../metrics.js';
import type { OutgoingMessage } from './attempt.js';
import { localBounce, type RecipientOutcome } from './replies.js';
import type { DeliveryGroup } from './router.js';
import type { SiteLimits } from './sites.js';

/** What delivery needs of the suppression list (relay/fleet/state.ts implements it). */
export interface SuppressionList {
  isSuppressed(address: string): Promise<{ reason: string; until: number } | null>;
  suppress(address: string, reason: string, ttlSeconds: number): Promise<unknown>;
}

/** No list at all: nothing is suppressed, nothing is kept. */
export const noSuppression: SuppressionList = {
  isSuppressed: () => Promise.resolve(null),
  suppress: () => Promise.resolve(),
};

/** Why this outcome puts its recipient on the list, or undefined when it does not (pure). */
export function suppressionReason(o: RecipientOutcome, cfg: SuppressionConfig): string | undefined {
  if (!cfg.enabled || o.result !== 'bounced' || !o.fromRemote) return undefined;
  if (!cfg.codes.includes(o.status)) return undefined;
  return o.remoteMta ? `${o.remoteMta}: ${o.reply}` : o.reply;
}

type Deliver = (
  msg: OutgoingMessage,
  group: DeliveryGroup,
  signal: AbortSignal,
  limits: SiteLimits,
) => Promise<RecipientOutcome[]>;

/** `deliver` with the suppression list in front of it and behind it. */
export function withSuppression(
  deliver: Deliver,
  deps: { list: SuppressionList; config: () => SuppressionConfig; metrics?: RelayMetrics },
): Deliver {
  return async (msg, group, signal, limits) => {
    const cfg = deps.config();
    const held: RecipientOutcome[] = [];
    let recipients = group.recipients;
    if (cfg.action === 'bounce') {
      const found = await Promise.all(recipients.map((r) => deps.list.isSuppressed(r)));
      recipients = recipients.filter((r, i) => {
        const entry = found[i];
        if (!entry) return true;
        held.push(
          localBounce(
            r,
            '5.1.1',
            `recipient suppressed until ${new Date(entry.until).toISOString()} after a permanent failure: ${entry.reason}`,
          ),
        );
        return false;
      });
      if (held.length) deps.metrics?.suppressedRecipients.inc({ action: 'bounced' }, held.length);
    }
    const outcomes = recipients.length ? await deliver(msg, { ...group, recipients }, signal, limits) : [];
    const added = outcomes.flatMap((o) => {
      const reason = suppressionReason(o, cfg);
      return reason === undefined ? [] : [deps.list.suppress(o.recipient, reason, cfg.ttl)];
    });
    if (added.length) {
      await Promise.all(added);
      deps.metrics?.suppressionsAdded.inc({ source: 'bounce' }, added.length);
    }
    return [...held, ...outcomes];
  };
}
