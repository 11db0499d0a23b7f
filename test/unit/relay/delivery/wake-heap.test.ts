import { WakeHeap } from '../../../../relay/delivery/wake-heap.js';

test('pops due ids earliest first; rescheduling replaces the old time', () => {
  const h = new WakeHeap();
  h.set('c', 30);
  h.set('a', 10);
  h.set('b', 20);
  h.set('a', 25); // rescheduled later
  expect(h.size).toBe(3);
  expect(h.peek()).toBe(20);
  expect(h.popDue(24)).toEqual(['b']);
  expect(h.popDue(100)).toEqual(['a', 'c']);
  expect(h.peek()).toBeUndefined();
});

test('deleted ids never surface; many entries stay ordered', () => {
  const h = new WakeHeap();
  const times = Array.from({ length: 500 }, (_, i) => (i * 7919) % 1000);
  times.forEach((t, i) => h.set(`m${i}`, t));
  h.delete('m0');
  const out = h.popDue(10_000);
  expect(out).toHaveLength(499);
  expect(out).not.toContain('m0');
  const at = out.map((id) => times[Number(id.slice(1))]!);
  expect(at).toEqual([...at].sort((a, b) => a - b));
});
