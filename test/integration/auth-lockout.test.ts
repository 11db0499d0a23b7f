/**
 * The failed-AUTH lockout under parallel guessing (issue 12, item 1), against the relay as a real
 * process: many connections from one address do STARTTLS and AUTH at the same moment. Checks in
 * flight count against the allowance, so no more passwords are checked than lockoutAfterFailures
 * allows, and the right password is refused while the lockout is in force and stays refused.
 */
import path from 'node:path';
import nodemailer from 'nodemailer';
import { makeTempDir, relayConfig, startRelay, writeUsersFile, type RelayProcess } from '../helpers/relay.js';
import { SmtpClient, authPlain } from '../helpers/smtp-client.js';
import { makeCa, makeCert, writeCert, type TestCa } from '../helpers/tls.js';

jest.setTimeout(120_000);

const PASSWORD = 'alice-secret';
const ALLOWANCE = 5; // auth.throttle.lockoutAfterFailures
const ATTACKER = '127.0.0.77';
const LOCKED = '454 4.7.0 Too many failed authentication attempts, try again later';

let relay: RelayProcess;
let ca: TestCa;

beforeAll(async () => {
  const dir = await makeTempDir();
  ca = makeCa();
  await writeCert(dir, makeCert(ca));
  await writeUsersFile(path.join(dir, 'users'), { alice: PASSWORD });
  relay = await startRelay({
    dir,
    config: relayConfig({
      listeners: { submission: { address: '127.0.0.1', port: 0 } },
      tls: { certFile: 'cert.pem', keyFile: 'key.pem' },
      auth: {
        usersFile: 'users',
        // The lockout outlasts the test by far: everything after the burst happens while it is in force.
        throttle: {
          delayAfterFailures: 2,
          maxDelayMs: 200,
          lockoutAfterFailures: ALLOWANCE,
          lockout: 600,
          window: 900,
        },
      },
      domains: [{ name: 'example.com', allowedUsers: ['alice'] }],
    }),
  });
});
afterAll(async () => relay?.stop());

const tlsOpts = () => ({ ca: ca.certPem, servername: 'localhost' });

async function readyForAuth(localAddress: string): Promise<SmtpClient> {
  const c = await SmtpClient.connect(relay.ports.submission!, { localAddress });
  await c.command('EHLO attacker.test');
  expect((await c.startTls(tlsOpts())).code).toBe(220);
  await c.command('EHLO attacker.test');
  return c;
}

test('40 parallel STARTTLS + AUTH attempts from one address: at most the allowance is checked, then the lockout holds even for the right password', async () => {
  const clients = await Promise.all(Array.from({ length: 40 }, () => readyForAuth(ATTACKER)));
  // Every 8th attempt carries the right password: one that got through during the burst would lift
  // the lockout in the old code.
  const password = (i: number) => (i % 8 === 7 ? PASSWORD : `guess-${i}`);
  // All AUTH lines leave at once; only then are the replies read.
  for (const [i, c] of clients.entries()) c.write(`AUTH PLAIN ${authPlain('alice', password(i))}\r\n`);
  const replies = await Promise.all(clients.map((c) => c.reply(30_000)));
  for (const c of clients) c.close();

  // The relay's own record of the password checks it made (one log line per check, never the password).
  const fromAttacker = relay.logs.filter((l) => l.client === ATTACKER);
  const failedChecks = fromAttacker.filter((l) => l.msg === 'AUTH failed');
  const successes = fromAttacker.filter((l) => l.msg === 'AUTH ok');
  expect(failedChecks).toHaveLength(ALLOWANCE); // 35 guesses, only the allowance checked
  // Replies: the right password may have got in before the lockout; the first ALLOWANCE - 1 failures
  // got 535, the one that reached the allowance and every attempt after it the lockout reply.
  const raw = replies.map((r) => r.raw);
  expect(raw.filter((r) => r.startsWith('535 '))).toHaveLength(ALLOWANCE - 1);
  expect(raw.filter((r) => r.startsWith('235 '))).toHaveLength(successes.length);
  expect(raw.filter((r) => r === LOCKED)).toHaveLength(40 - (ALLOWANCE - 1) - successes.length);
  // No success after the lockout began (the old code let one through and it lifted the lockout).
  const lockedAt = relay.logs.findIndex((l) => l.msg === 'client locked out of AUTH');
  expect(lockedAt).toBeGreaterThanOrEqual(0);
  for (const s of successes) expect(relay.logs.indexOf(s)).toBeLessThan(lockedAt);
  const attempts = async (result: string) =>
    (await relay.metric('mailfleet_relay_auth_attempts_total', {
      listener: 'submission',
      mechanism: 'PLAIN',
      result,
    })) ?? 0;
  expect(
    (await attempts('success')) +
      (await attempts('failure')) +
      (await attempts('throttled')) +
      (await attempts('locked_out')),
  ).toBe(40);

  // A real client with the right password, from the locked-out address, while the lockout is in force:
  // refused with the lockout reply, and again afterwards (nothing lifted it).
  const login = () =>
    nodemailer
      .createTransport({
        host: '127.0.0.1',
        port: relay.ports.submission,
        localAddress: ATTACKER,
        requireTLS: true,
        tls: tlsOpts(),
        auth: { user: 'alice', pass: PASSWORD },
      })
      .verify();
  await expect(login()).rejects.toMatchObject({ responseCode: 454, response: LOCKED });
  await expect(login()).rejects.toMatchObject({ responseCode: 454, response: LOCKED });

  // The lockout is per address: another client logs in.
  const other = await readyForAuth('127.0.0.78');
  expect((await other.command(`AUTH PLAIN ${authPlain('alice', PASSWORD)}`)).code).toBe(235);
  other.close();
  expect(relay.logs.filter((l) => l.msg === 'client locked out of AUTH')).toHaveLength(1);
});
