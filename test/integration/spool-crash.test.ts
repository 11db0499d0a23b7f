/**
 * "250 means fsynced": a process accepting messages from many concurrent sessions is SIGKILLed
 * mid-burst; after a restart, every message it acknowledged is in the spool, intact.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { text } from 'node:stream/consumers';
import { Spool } from '../../relay/spool/spool.js';

const bodyFor = (n: number) =>
  `Subject: message ${n}\r\n\r\n` + `line ${n} `.repeat(1 + ((n * 7919) % 4000)) + '\r\n';

let dir: string;
beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'spool-crash-'));
});
afterEach(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

test.each([1, 2, 3])('SIGKILL mid-burst loses no acknowledged message (round %i)', async (round) => {
  const writer = spawn(
    process.execPath,
    [path.join(__dirname, 'fixtures/spool-writer.mjs'), dir, '20', '1000'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const acked = new Map<string, number>();
  const killAfter = 150 * round;
  const exited = new Promise<NodeJS.Signals | null>((resolve) =>
    writer.on('exit', (_c, sig) => resolve(sig)),
  );
  for await (const line of readline.createInterface({ input: writer.stdout })) {
    const m = /^ACK (\S+) (\d+)$/.exec(line);
    if (m) acked.set(m[1]!, Number(m[2]));
    if (acked.size === killAfter) writer.kill('SIGKILL');
  }
  expect(await exited).toBe('SIGKILL');
  expect(acked.size).toBeGreaterThanOrEqual(killAfter);

  const spool = await Spool.open({ dir });
  try {
    const missing = [...acked.keys()].filter((id) => !spool.get(id));
    expect(missing).toEqual([]);
    for (const [id, n] of acked) expect(await text(spool.readBody(id))).toBe(bodyFor(n));
    expect(await fs.readdir(path.join(dir, 'corrupt'))).toEqual([]);
  } finally {
    await spool.close();
  }
});
