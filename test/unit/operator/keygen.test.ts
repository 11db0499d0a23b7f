import { createPrivateKey } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { generatePrivateKeyPem, Slots } from '../../../operator/shared/keygen.js';

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

test("the key limiter serves 'first' waiters (a relay's keys) before 'normal' ones queued earlier", async () => {
  const slots = new Slots(1);
  const order: string[] = [];
  await slots.acquire('normal'); // held
  const waiting = [
    slots.acquire('normal').then(() => order.push('domain-1')),
    slots.acquire('normal').then(() => order.push('domain-2')),
    slots.acquire('first').then(() => order.push('relay')),
  ];
  for (let i = 0; i < 3; i++) {
    slots.release();
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(waiting);
  expect(order).toEqual(['relay', 'domain-1', 'domain-2']);
});
