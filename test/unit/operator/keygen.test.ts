import { createPrivateKey } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { generatePrivateKeyPem } from '../../../operator/shared/keygen.js';

test('a burst of generations larger than the cores all complete, each a distinct key of its kind', async () => {
  const n = availableParallelism() * 8 + 3;
  const pems = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      generatePrivateKeyPem(i % 5 === 0 ? { type: 'rsa', bits: 1024 } : { type: 'ed25519' }),
    ),
  );
  expect(new Set(pems).size).toBe(n);
  pems.forEach((pem, i) =>
    expect(createPrivateKey(pem).asymmetricKeyType).toBe(i % 5 === 0 ? 'rsa' : 'ed25519'),
  );
  // and the slots were all handed back: one more runs at once
  await expect(generatePrivateKeyPem({ type: 'ed25519' })).resolves.toMatch(/BEGIN PRIVATE KEY/);
});
