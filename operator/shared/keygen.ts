/**
 * Every private key the operator generates (DKIM keys, each relay's CA and server key) goes through here:
 * node:crypto's async generateKeyPair on libuv's thread pool, at most one generation per core at once. So a
 * burst of thousands of new domains keeps every core generating, as the bench's floor does, yet leaves the
 * event loop its share of the CPU (API traffic, Lease renewals); and the MailDomain workers can outnumber
 * the cores: while some wait here for a key, others talk to the API server.
 */
import { generateKeyPair } from 'node:crypto';
import { availableParallelism } from 'node:os';

export type KeyType = { type: 'rsa'; bits: number } | { type: 'ed25519' };

const LIMIT = availableParallelism();
let running = 0;
const queued: Array<() => void> = [];

/** A new private key, PKCS#8 PEM. */
export async function generatePrivateKeyPem(key: KeyType): Promise<string> {
  if (running >= LIMIT) await new Promise<void>((resolve) => queued.push(resolve));
  else running++;
  try {
    return await generate(key);
  } finally {
    // Hand the slot straight to the next waiter (running stays the same), or free it.
    const next = queued.shift();
    if (next) next();
    else running--;
  }
}

function generate(key: KeyType): Promise<string> {
  const publicKeyEncoding = { type: 'spki', format: 'pem' } as const;
  const privateKeyEncoding = { type: 'pkcs8', format: 'pem' } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, _publicKey: string, privateKey: string) =>
      err ? reject(err) : resolve(privateKey);
    if (key.type === 'ed25519') generateKeyPair('ed25519', { publicKeyEncoding, privateKeyEncoding }, done);
    else generateKeyPair('rsa', { modulusLength: key.bits, publicKeyEncoding, privateKeyEncoding }, done);
  });
}
