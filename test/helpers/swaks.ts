/**
 * swaks (Debian's "Swiss Army Knife for SMTP") as a real, independent SMTP client. Installed with TLS
 * support by scripts/test-tools.sh, whose check the integration globalSetup runs: a machine without it
 * stops the run at the start, naming the packages, rather than skipping these tests.
 *
 *   const r = await swaks(['--server', `127.0.0.1:${port}`, '--from', 'a@example.com', '--to', 'b@mx.test']);
 *   r.code                 swaks's exit code (0: the message was accepted)
 *   r.replies              every server reply line swaks printed ("250 2.1.0 Accepted", …)
 *   lastReply(r)           the last reply line ("250 2.0.0 Ok: queued as …")
 *
 * swaks exit codes: 0 ok, 2 connection error, 21 timeout, 23 MAIL refused, 24 every RCPT refused,
 * 25 DATA refused, 28 AUTH refused, 29 TLS failed (see `man swaks`).
 */
import { spawn } from 'node:child_process';

export interface SwaksResult {
  code: number | null;
  output: string;
  replies: string[];
}

export async function swaks(args: string[], timeoutMs = 30_000): Promise<SwaksResult> {
  const child = spawn('swaks', ['--timeout', '10', '--hide-informational', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`swaks did not finish within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.once('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const replies = output
    .split('\n')
    .filter((l) => /^(<-|<\*\*|<~|<~\*)\s+\d{3}/.test(l))
    .map((l) => l.replace(/^\S+\s+/, '').trim());
  return { code, output, replies };
}

export function lastReply(r: SwaksResult): string {
  return r.replies[r.replies.length - 1] ?? '';
}
