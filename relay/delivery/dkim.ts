/**
 * DKIM signing: each mail domain may sign its mail with its own key, selector and algorithm
 * (`domains[].dkim`); the signing domain is the envelope sender's domain, the one the relay accepted
 * the message for.
 *
 * A message is signed once, at its first delivery attempt, and the DKIM-Signature header is kept in the
 * delivery state so every later attempt (and every destination of a multi-domain message) sends the
 * same bytes (docs/adr/0032-relay-delivery-dkim-at-first-attempt.md). Signing reads the spooled body
 * once as a stream: mailauth's signer keeps the header section in memory and only hashes the body, so
 * memory stays bounded whatever the message size.
 *
 * A damaged spool body rethrows CorruptEntryError (the queue manager sets the message aside).
 * Other failures (unreadable key, bad key, signer errors) are returned with the reason, and the domain's
 * `dkim.onFailure` decides (queue-manager.ts): `defer` (the default) keeps the message queued and signs
 * again at its next attempt, because receivers that enforce DMARC reject or junk unsigned mail from a
 * domain that publishes DKIM, and a held message is not lost (it bounces only at the end of its
 * lifetime, with the reason); `send-unsigned` delivers it without a signature. Both are counted in
 * dkim_signing_failures_total{action} and alerted on.
 */
import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { dkimSign } from 'mailauth';
import type { DkimConfig, DkimFailureAction } from '../config/schema.js';
import { CorruptEntryError } from '../spool/spool.js';

export interface DkimResult {
  /** DKIM-Signature header field(s), each ending in CRLF; '' when none was made. */
  signature: string;
  /** Why no signature was made, when signing was configured but failed. */
  error?: string;
  /** What the domain wants done when `error` is set (domains[].dkim.onFailure). */
  onFailure?: DkimFailureAction;
}

/** Signs the message read from `body` as `domain` with `dkim`'s key. */
export async function signMessage(
  domain: string,
  dkim: DkimConfig,
  body: Readable,
  now: number,
): Promise<DkimResult> {
  let privateKey: string;
  try {
    privateKey = await fs.readFile(dkim.keyFile, 'utf8');
  } catch (err) {
    body.destroy();
    return {
      signature: '',
      error: `cannot read DKIM key ${dkim.keyFile}: ${(err as Error).message}`,
      onFailure: dkim.onFailure,
    };
  }
  try {
    const key = {
      signingDomain: domain,
      selector: dkim.selector,
      privateKey,
      algorithm: dkim.algorithm,
      canonicalization: 'relaxed/relaxed',
    };
    // The signer reads its keys from signatureData; the top-level fields only satisfy the types.
    const result = await dkimSign(body, { ...key, signTime: new Date(now), signatureData: [key] });
    if (result.errors.length) {
      const e = result.errors[0]!;
      return {
        signature: result.signatures,
        error: `DKIM signing failed: ${e.err.message}`,
        onFailure: dkim.onFailure,
      };
    }
    return { signature: result.signatures };
  } catch (err) {
    body.destroy();
    if (err instanceof CorruptEntryError) throw err; // the spooled body is damaged: not a signing problem
    return {
      signature: '',
      error: `DKIM signing failed: ${(err as Error).message}`,
      onFailure: dkim.onFailure,
    };
  }
}
