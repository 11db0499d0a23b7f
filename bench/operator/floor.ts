/**
 * The crypto floor of a scenario: how long this machine takes to generate the keys the operator must
 * generate for it (per SmtpRelay a CA and a server key, RSA-2048; per MailDomain a DKIM key of its
 * algorithm), with every core busy: `cores` generations in flight at once through node:crypto's async
 * generateKeyPair (the libuv thread pool), PEM-encoded as the operator stores them. Convergence is judged
 * against it, measured in the same run on the same machine.
 */
import { generateKeyPair } from 'node:crypto';
import os from 'node:os';

export type KeyKind = 'rsa-2048' | 'ed25519';

export interface FloorResult {
  keys: Partial<Record<KeyKind, number>>;
  cores: number;
  seconds: number;
}

function one(kind: KeyKind): Promise<void> {
  const enc = {
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  } as const;
  return new Promise((resolve, reject) => {
    const done = (err: Error | null) => (err ? reject(err) : resolve());
    if (kind === 'ed25519') generateKeyPair('ed25519', enc, done);
    else generateKeyPair('rsa', { modulusLength: 2048, ...enc }, done);
  });
}

export async function measureFloor(
  keys: Partial<Record<KeyKind, number>>,
  cores = os.availableParallelism(),
): Promise<FloorResult> {
  const todo: KeyKind[] = [];
  for (const [kind, n] of Object.entries(keys) as [KeyKind, number][])
    for (let i = 0; i < n; i++) todo.push(kind);
  let next = 0;
  const t0 = process.hrtime.bigint();
  const lane = async () => {
    while (next < todo.length) await one(todo[next++]!);
  };
  await Promise.all(Array.from({ length: cores }, lane));
  return {
    keys,
    cores,
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
  };
}
