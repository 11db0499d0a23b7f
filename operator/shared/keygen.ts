/**
 * Every private key the operator generates (DKIM keys, each relay's CA and server key) goes through here:
 * node:crypto's async generateKeyPair on libuv's thread pool, at most one generation per core at once. So a
 * burst of thousands of new domains keeps every core generating, as the bench's floor does, yet leaves the
 * event loop its share of the CPU (API traffic, Lease renewals); and the MailDomain workers can outnumber
 * the cores: while some wait here for a key, others talk to the API server.
 *
 * A relay's keys go ahead of the domains' ('first'): every domain of a relay waits for the relay to roll
 * out, so in a burst of new relays and domains the relays' CA and server keys must not queue behind
 * thousands of DKIM keys.
 */
import { generateKeyPair } from 'node:crypto';
import { availableParallelism } from 'node:os';

export type KeyType = { type: 'rsa'; bits: number } | { type: 'ed25519' };

/** At most `limit` holders at once; waiters asking to go 'first' are served before 'normal' ones. */
export class Slots {
  private running = 0;
  private readonly queued = { first: [] as Array<() => void>, normal: [] as Array<() => void> };
  constructor(private readonly limit: number) {}

  async acquire(order: 'first' | 'normal'): Promise<void> {
    if (this.running < this.limit) {
      this.running++;
      return;
    }
    await new Promise<void>((resolve) => this.queued[order].push(resolve));
  }

  /** Hands the slot straight to the next waiter (running stays the same), or frees it. */
  release(): void {
    const next = this.queued.first.shift() ?? this.queued.normal.shift();
    if (next) next();
    else this.running--;
  }
}

const slots = new Slots(availableParallelism());

/** A new private key, PKCS#8 PEM. */
export async function generatePrivateKeyPem(
  key: KeyType,
  order: 'first' | 'normal' = 'normal',
): Promise<string> {
  await slots.acquire(order);
  try {
    return await generate(key);
  } finally {
    slots.release();
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
