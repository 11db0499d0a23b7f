import {
  evaluateCa,
  evaluateServerCert,
  issueCa,
  issueServerCert,
  renewalDueAt,
  CERT_LIFETIME,
  CERT_RENEW_BEFORE,
} from '../../../operator/smtprelay/tls.js';
import { generatePassword, usersFile } from '../../../operator/smtprelay/passwords.js';
import { parseUsersFile, verifyPassword } from '../../../relay/auth/passwords.js';

const NOW = Date.parse('2025-01-01T00:00:00Z');
const DAY = 86400_000;

// node-forge signs in pure JS, which is slow under jest's module sandbox (~2 s per certificate).
describe('operator TLS', () => {
  it('issues a CA and a server certificate it keeps until renewal is due', async () => {
    const ca = await issueCa('test CA', NOW);
    expect(evaluateCa(ca, NOW)).toEqual({ ok: true });
    const names = ['mail.apps.svc', '*.mail-headless.apps.svc'];
    const cert = await issueServerCert(ca, names, NOW);
    expect(evaluateServerCert(cert, ca, names, NOW)).toEqual({ ok: true });
    expect(evaluateServerCert(cert, ca, [...names].reverse(), NOW + 10 * DAY)).toEqual({ ok: true });
    expect(renewalDueAt(cert)).toBe(NOW + CERT_LIFETIME - CERT_RENEW_BEFORE);
    expect(evaluateServerCert(cert, ca, names, NOW + CERT_LIFETIME - CERT_RENEW_BEFORE + 1000)).toEqual({
      ok: false,
      reason: 'certificate expires soon',
    });
    expect(evaluateServerCert(cert, ca, ['other.svc'], NOW)).toEqual({
      ok: false,
      reason: 'DNS names changed',
    });
    const otherCa = await issueCa('other', NOW);
    expect(evaluateServerCert(cert, otherCa, names, NOW)).toEqual({
      ok: false,
      reason: 'certificate is not signed by the current CA',
    });
    expect(evaluateServerCert({ cert: cert.cert, key: otherCa.key }, ca, names, NOW).ok).toBe(false);
    expect(evaluateServerCert(undefined, ca, names, NOW).ok).toBe(false);
    expect(evaluateCa({ cert: 'garbage', key: 'x' }, NOW).ok).toBe(false);
    expect(evaluateCa(ca, NOW + 3300 * DAY)).toEqual({ ok: false, reason: 'CA expires soon' });
  }, 60_000);
});

describe('generatePassword', () => {
  it('gives 32 letters and digits, never a leading "-" a command line would take for an option', () => {
    const many = Array.from({ length: 2000 }, () => generatePassword());
    expect(many.every((p) => /^[A-Za-z0-9]{32}$/.test(p))).toBe(true);
    expect(new Set(many).size).toBe(many.length);
    // Every symbol turns up: the draw is not stuck on part of the alphabet.
    expect(new Set(many.join('')).size).toBe(62);
  });
});

describe('usersFile', () => {
  const cost = { ln: 10, r: 8, p: 1 };
  it('hashes passwords, keeps a hash while its password is unchanged, and rehashes a changed one', async () => {
    const first = await usersFile(
      new Map([
        ['b', 'pw-b'],
        ['a', 'pw-a'],
      ]),
      undefined,
      cost,
    );
    const parsed = parseUsersFile(first);
    expect(parsed.errors).toEqual([]);
    expect([...parsed.users.keys()]).toEqual(['a', 'b']);
    expect(await verifyPassword('pw-a', parsed.users.get('a')!)).toBe(true);
    expect(first).not.toContain('pw-a');
    const same = await usersFile(
      new Map([
        ['a', 'pw-a'],
        ['b', 'pw-b'],
      ]),
      first,
      cost,
    );
    expect(same).toBe(first);
    const changed = await usersFile(
      new Map([
        ['a', 'pw-a'],
        ['b', 'new'],
      ]),
      first,
      cost,
    );
    expect(changed.split('\n')[0]).toBe(first.split('\n')[0]);
    expect(changed.split('\n')[1]).not.toBe(first.split('\n')[1]);
  });
});
