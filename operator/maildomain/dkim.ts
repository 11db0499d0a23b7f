/**
 * DKIM keys: generation (node:crypto), the public key record (RFC 6376 §3.6.1; ed25519 per RFC 8463), and
 * the check that a stored key fits the requested algorithm. The TXT value is what MailDomain status tells
 * the user to publish.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { generatePrivateKeyPem } from '../shared/keygen.js';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

export function generateDkimKey(algorithm: DkimAlgorithm, rsaBits: number): Promise<string> {
  return generatePrivateKeyPem(
    algorithm === 'ed25519-sha256' ? { type: 'ed25519' } : { type: 'rsa', bits: rsaBits },
  );
}

/** Parses a PEM private key; a string says what is wrong. */
export function parseDkimKey(pem: string, algorithm: DkimAlgorithm): KeyObject | string {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch {
    return 'is not a PEM private key';
  }
  const want = algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa';
  if (key.asymmetricKeyType !== want)
    return `is a ${key.asymmetricKeyType ?? 'unknown'} key but spec.dkim.algorithm is ${algorithm}`;
  return key;
}

/** The DKIM TXT record value for a private key: "v=DKIM1; k=rsa; p=<base64>". */
export function dkimRecordValue(key: KeyObject): string {
  const pub = createPublicKey(key);
  const der = pub.export({ type: 'spki', format: 'der' });
  if (pub.asymmetricKeyType === 'ed25519') {
    // RFC 8463: the raw 32-byte public key, not the SPKI structure.
    return `v=DKIM1; k=ed25519; p=${der.subarray(der.length - 32).toString('base64')}`;
  }
  return `v=DKIM1; k=rsa; p=${der.toString('base64')}`;
}

const infoMemo = new Map<string, { record: string } | { error: string }>();
const INFO_MEMO_LIMIT = 20_000;

/**
 * The DKIM record of a stored key, or what is wrong with it; kept per key (by hash) so that reconciling
 * thousands of domains does not parse thousands of keys each time. Bounded: cleared when full.
 */
export function dkimKeyInfo(pem: string, algorithm: DkimAlgorithm): { record: string } | { error: string } {
  const k = `${algorithm}:${createHash('sha256').update(pem).digest('base64')}`;
  const hit = infoMemo.get(k);
  if (hit) return hit;
  const parsed = parseDkimKey(pem, algorithm);
  const info = typeof parsed === 'string' ? { error: parsed } : { record: dkimRecordValue(parsed) };
  if (infoMemo.size >= INFO_MEMO_LIMIT) infoMemo.clear();
  infoMemo.set(k, info);
  return info;
}
