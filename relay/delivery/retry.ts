/**
 * The retry schedule (pure): when a deferred message is tried again, when it expires, when its sender
 * is told it is late.
 *
 * Postfix is the model: the first retry comes `firstRetry` after the first failed attempt, each later
 * delay doubles up to `maxBackoff`, and a message still undelivered `maxLifetime` after it was accepted
 * is bounced. The next attempt is never scheduled past the expiry time, so the last attempt happens at
 * expiry and a message is only bounced as expired after a real attempt failed at or after that time.
 *
 * Times are epoch milliseconds; the configuration is in seconds (as in the config file).
 */
import type { RetryConfig } from '../config/schema.js';

/** Delay in ms before the attempt that follows `failedAttempts` failed attempts (at least 1). */
export function backoffMs(failedAttempts: number, retry: RetryConfig): number {
  const first = retry.firstRetry * 1000;
  const max = Math.max(retry.maxBackoff * 1000, first);
  const doublings = Math.max(0, failedAttempts - 1);
  // 2^31 ms is already 24 days; stop doubling long before the number overflows
  if (doublings >= 31) return max;
  return Math.min(first * 2 ** doublings, max);
}

/** The moment a message accepted at `receivedAt` expires. */
export function expiresAt(receivedAt: number, retry: RetryConfig): number {
  return receivedAt + retry.maxLifetime * 1000;
}

/** true when a message accepted at `receivedAt` has been in the queue its whole allowed lifetime. */
export function isExpired(receivedAt: number, now: number, retry: RetryConfig): boolean {
  return now >= expiresAt(receivedAt, retry);
}

/** When to try again after `failedAttempts` failed attempts, the last one ending at `now`. */
export function nextAttemptAt(
  receivedAt: number,
  failedAttempts: number,
  now: number,
  retry: RetryConfig,
): number {
  return Math.min(now + backoffMs(failedAttempts, retry), Math.max(now, expiresAt(receivedAt, retry)));
}

/** true when a delay notice is due: enabled, not sent yet, and the message is late enough. */
export function delayWarningDue(
  receivedAt: number,
  now: number,
  alreadyNotified: boolean,
  retry: RetryConfig,
): boolean {
  if (retry.delayWarningAfter <= 0 || alreadyNotified) return false;
  return now - receivedAt >= retry.delayWarningAfter * 1000;
}
