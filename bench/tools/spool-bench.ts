/**
 * The spool alone, in one process: W concurrent writers each accept and then remove M messages of 4 KiB
 * (what a relay does for mail delivered at its first attempt), on a spool in DIR; prints msgs/s and the
 * process's CPU per message. `--spool` loads another build's spool module for an A/B (ADR 42).
 *
 *   node dist/bench/bench/tools/spool-bench.js DIR [writers=20] [messages=1000] [--spool PATH/spool.js]
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import type { Spool as SpoolType } from '../../relay/spool/spool.js';

const { values, positionals } = parseArgs({ options: { spool: { type: 'string' } }, allowPositionals: true });
const [dir, writers = '20', messages = '1000'] = positionals;
if (!dir) throw new Error('usage: spool-bench DIR [writers] [messages] [--spool PATH]');
const { Spool } = (await import(
  values.spool ? pathToFileURL(path.resolve(values.spool)).href : '../../relay/spool/spool.js'
)) as { Spool: typeof SpoolType };

await fs.rm(dir, { recursive: true, force: true });
const spool = await Spool.open({ dir });
const body = Buffer.from(`Subject: bench\r\n\r\n${'y'.repeat(4096)}\r\n`);
const envelope = () => ({
  mailFrom: 'app@example.com',
  recipients: ['rcpt@example.org'],
  receivedAt: Date.now(),
  listener: 'relay' as const,
  client: { address: '127.0.0.1' },
});
async function* once() {
  yield body;
}
const start = process.hrtime.bigint();
const cpu = process.cpuUsage();
await Promise.all(
  Array.from({ length: Number(writers) }, async () => {
    for (let i = 0; i < Number(messages); i++)
      await spool.remove((await spool.accept(envelope(), once())).id);
  }),
);
const used = process.cpuUsage(cpu);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const n = Number(writers) * Number(messages);
await spool.close();
await fs.rm(dir, { recursive: true, force: true });
console.log(
  `${values.spool ?? 'this build'}: ${(n / seconds).toFixed(0)} msgs/s, ` +
    `CPU ${((used.user + used.system) / n).toFixed(0)} µs/msg (user ${(used.user / n).toFixed(0)}, system ${(used.system / n).toFixed(0)})`,
);
