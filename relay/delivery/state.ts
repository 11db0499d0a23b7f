/**
 * A message's delivery state: how far its delivery got (attempts, next attempt, per-recipient outcome).
 * Its meaning belongs to delivery (outcome.ts folds replies into it, the queue manager decides with it);
 * the spool only stores it in state/<id> and reads it back at start through parseDeliveryState().
 *
 * Invariant: only the queue manager writes it for a queued message (Spool.saveState); the drain and the
 * queue tools ask the queue manager. This module imports nothing, so the spool can use it without a cycle.
 */

/** Outcome so far for one recipient. */
export interface RecipientState {
  status: 'pending' | 'delivered' | 'failed';
  /** Last reply or error seen for this recipient, e.g. "550 5.1.1 No such user". */
  lastReply?: string;
  /** Enhanced status code (RFC 3463) of that reply or error, e.g. "5.1.1" (for DSNs). */
  statusCode?: string;
  /** true when lastReply is the remote server's reply rather than a local error description. */
  fromRemote?: boolean;
  /** The host that gave lastReply. */
  remoteMta?: string;
  /** Failed recipients: the message's life ended by expiry rather than a permanent reply. */
  expired?: boolean;
  /** Failed recipients: the sender was told (a DSN is in the spool) or needs no telling (null sender). */
  reported?: boolean;
}

/** Delivery progress of one message, kept in state/<id>. */
export interface DeliveryState {
  attempts: number;
  /** Epoch ms of the next attempt; 0 means now. */
  nextAttemptAt: number;
  lastAttemptAt?: number;
  lastError?: string;
  /** A delay notice was already sent to the sender. */
  delayNotified?: boolean;
  /**
   * DKIM-Signature header field(s) computed once, at the first attempt, and prepended to the body on
   * every attempt; '' when signing was tried and produced none. Absent until then.
   */
  dkimSignature?: string;
  recipients: Record<string, RecipientState>;
}

const STATUSES: ReadonlySet<unknown> = new Set(['pending', 'delivered', 'failed']);

/**
 * A state file's text as a DeliveryState; throws when it is not JSON or lacks what delivery relies on
 * (the caller then retries the message in full: at-least-once, never lost).
 */
export function parseDeliveryState(text: string): DeliveryState {
  const value: unknown = JSON.parse(text);
  const s = value as Partial<DeliveryState> | null;
  if (
    typeof s !== 'object' ||
    s === null ||
    typeof s.attempts !== 'number' ||
    typeof s.nextAttemptAt !== 'number' ||
    typeof s.recipients !== 'object' ||
    s.recipients === null
  )
    throw new Error('not a delivery state (attempts, nextAttemptAt, recipients)');
  for (const [address, r] of Object.entries(s.recipients))
    if (typeof r !== 'object' || r === null || !STATUSES.has(r.status))
      throw new Error(`recipient ${address} has no valid status`);
  return s as DeliveryState;
}
