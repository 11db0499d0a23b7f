/**
 * Result handling (pure): folds what the downstream servers said into a message's delivery state, and
 * decides at the end of an attempt what happens next.
 *
 * - recordOutcomes(): after each destination's final reply. delivered → done for good, bounced →
 *   failed (to report), deferred → still pending with the reason kept for a later DSN. The caller saves
 *   the result at once (Spool.saveState: on stable storage, state/ fsynced, before it resolves), so
 *   neither a crash nor a power cut redelivers to a recipient whose 250 was saved. The one window is
 *   the end of a message: its removal becomes durable with the spool's next directory fsync (at most
 *   200 ms later), and a power cut before that brings the whole message back (at-least-once; ADR 36).
 * - finishAttempt(): once every destination of the attempt answered. Pending recipients past the
 *   message's lifetime fail as expired (5.4.7); failures not yet reported are listed for a bounce; a
 *   delay notice is listed once when due; otherwise the next attempt time is set. A message with no
 *   pending recipient left is finished (the caller removes it once the bounce, if any, is durable).
 * - Null-sender mail (a bounce itself) is never bounced: its failures are marked reported and counted
 *   as dropped instead (RFC 5321 §4.5.5, RFC 3464 §2).
 */
import type { RetryConfig } from '../config/schema.js';
import type { Envelope } from '../spool/envelope.js';
import type { DsnRecipient } from './dsn.js';
import type { RecipientOutcome } from './replies.js';
import { delayWarningDue, expiresAt, isExpired, nextAttemptAt } from './retry.js';
import type { DeliveryState, RecipientState } from './state.js';

/** Delivery state of a message not attempted yet: every envelope recipient pending. */
export function initialState(envelope: Envelope): DeliveryState {
  const recipients: Record<string, RecipientState> = {};
  for (const r of envelope.recipients) recipients[r] = { status: 'pending' };
  return { attempts: 0, nextAttemptAt: 0, recipients };
}

/** Recipients still to deliver, in envelope order. */
export function pendingRecipients(envelope: Envelope, state: DeliveryState | undefined): string[] {
  const seen = new Set<string>();
  return envelope.recipients.filter((r) => {
    if (seen.has(r)) return false;
    seen.add(r);
    return (state?.recipients[r]?.status ?? 'pending') === 'pending';
  });
}

/** The state after these per-recipient outcomes (the input is not changed). */
export function recordOutcomes(state: DeliveryState, outcomes: readonly RecipientOutcome[]): DeliveryState {
  const recipients = { ...state.recipients };
  for (const o of outcomes) {
    const before = recipients[o.recipient];
    if (before && before.status !== 'pending') continue; // a final outcome is never undone
    recipients[o.recipient] = {
      status: o.result === 'delivered' ? 'delivered' : o.result === 'bounced' ? 'failed' : 'pending',
      lastReply: o.reply,
      statusCode: o.status,
      fromRemote: o.fromRemote,
      ...(o.remoteMta ? { remoteMta: o.remoteMta } : {}),
    };
  }
  const lastError = outcomes.find((o) => o.result !== 'delivered')?.reply;
  return { ...state, recipients, ...(lastError ? { lastError } : {}) };
}

export interface AttemptDecision {
  /** The state to keep (saved when the message stays; its failures are marked reported already). */
  state: DeliveryState;
  /** No recipient is pending: remove the message once `bounce` (if any) is queued. */
  finished: boolean;
  /** Failed recipients to report to the sender now, in a failure DSN. */
  bounce: DsnRecipient[];
  /** Pending recipients to mention in a delay notice now (sent once per message). */
  delay: DsnRecipient[];
  /** Failures that are not reported because the message has a null sender. */
  dropped: number;
  /** Every reported failure is an expiry (for the bounce metric's kind). */
  allExpired: boolean;
}

/** Decides what follows an attempt that ended at `now`. */
export function finishAttempt(
  envelope: Envelope,
  state: DeliveryState,
  now: number,
  retry: RetryConfig,
): AttemptDecision {
  const attempts = state.attempts + 1;
  const recipients: Record<string, RecipientState> = {};
  const expired = isExpired(envelope.receivedAt, now, retry);
  for (const [addr, r] of Object.entries(state.recipients)) {
    recipients[addr] =
      r.status === 'pending' && expired ? { ...r, status: 'failed', statusCode: '5.4.7', expired: true } : r;
  }
  const nullSender = envelope.mailFrom === '';
  const bounce: DsnRecipient[] = [];
  let dropped = 0;
  let allExpired = true;
  for (const [addr, r] of Object.entries(recipients)) {
    if (r.status !== 'failed' || r.reported) continue;
    if (nullSender) dropped++;
    else bounce.push(toDsnRecipient(addr, r, 'failed', now));
    allExpired &&= r.expired === true;
    recipients[addr] = { ...r, reported: true };
  }
  const pending = Object.entries(recipients).filter(([, r]) => r.status === 'pending');
  const next: DeliveryState = {
    ...state,
    attempts,
    lastAttemptAt: now,
    recipients,
    nextAttemptAt: pending.length ? nextAttemptAt(envelope.receivedAt, attempts, now, retry) : 0,
  };
  let delay: DsnRecipient[] = [];
  if (
    pending.length &&
    !nullSender &&
    delayWarningDue(envelope.receivedAt, now, !!state.delayNotified, retry)
  ) {
    const until = expiresAt(envelope.receivedAt, retry);
    delay = pending.map(([addr, r]) => ({
      ...toDsnRecipient(addr, r, 'delayed', now),
      willRetryUntil: until,
    }));
    next.delayNotified = true;
  }
  return {
    state: next,
    finished: pending.length === 0,
    bounce,
    delay,
    dropped,
    allExpired: allExpired && (bounce.length > 0 || dropped > 0),
  };
}

function toDsnRecipient(
  recipient: string,
  r: RecipientState,
  action: 'failed' | 'delayed',
  now: number,
): DsnRecipient {
  const cls = action === 'failed' ? '5' : '4';
  const code = r.statusCode ?? `${cls}.0.0`;
  return {
    recipient,
    action,
    status: cls + code.slice(1),
    ...(r.remoteMta ? { remoteMta: r.remoteMta } : {}),
    ...(r.lastReply
      ? { diagnostic: { type: r.fromRemote ? 'smtp' : 'X-mailfleet', text: r.lastReply } }
      : {}),
    lastAttemptAt: now,
  };
}
