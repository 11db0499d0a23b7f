/**
 * Generated secrets of an SmtpRelay: SMTP user passwords, the handoff password, the admin token, and the
 * users file of hashes the relay verifies against.
 *
 * Hashes are salted, so hashing again would change the users file on every reconcile: an existing hash is
 * kept when the password still verifies against it. Verifications are memoized by (hash, sha256(password)),
 * so steady state costs no scrypt work. Passwords are never logged.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  hashPassword,
  parseHash,
  parseUsersFile,
  renderUsersFile,
  verifyPassword,
} from '../../relay/auth/passwords.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Bytes below this map evenly onto ALPHABET (248 = 4 × 62); the rest are drawn again. */
const UNBIASED_BELOW = 256 - (256 % ALPHABET.length);

/**
 * 32 letters and digits (about 190 bits). Only those: a password from base64url may start with "-",
 * which command-line tools read as an option (swaks --auth-password -Xyz failed on the real-node test).
 */
export function generatePassword(length = 32): string {
  let out = '';
  while (out.length < length) {
    for (const b of randomBytes(length)) {
      if (b < UNBIASED_BELOW && out.length < length) out += ALPHABET[b % ALPHABET.length];
    }
  }
  return out;
}

const verified = new Map<string, boolean>();
const MEMO_LIMIT = 10_000;

async function stillValid(password: string, phc: string): Promise<boolean> {
  const memoKey = `${phc}\u0000${createHash('sha256').update(password).digest('hex')}`;
  const hit = verified.get(memoKey);
  if (hit !== undefined) return hit;
  const parsed = parseHash(phc);
  const ok = typeof parsed !== 'string' && (await verifyPassword(password, parsed));
  if (verified.size >= MEMO_LIMIT) verified.clear();
  verified.set(memoKey, ok);
  return ok;
}

/**
 * Renders the users file for these (user → password) pairs, reusing hashes from the current file where
 * the password is unchanged. Users are sorted by name so the file is stable.
 */
export async function usersFile(
  passwords: ReadonlyMap<string, string>,
  current: string | undefined,
  cost?: { ln: number; r: number; p: number },
): Promise<string> {
  const existing = new Map<string, string>();
  if (current) {
    for (const line of current.split('\n')) {
      const i = line.indexOf(':');
      if (i > 0) existing.set(line.slice(0, i), line.slice(i + 1).trim());
    }
    // Validate through the relay's own parser; a damaged file is simply regenerated.
    if (parseUsersFile(current).errors.length) existing.clear();
  }
  const entries: Array<[string, string]> = [];
  for (const user of [...passwords.keys()].sort()) {
    const password = passwords.get(user)!;
    const old = existing.get(user);
    entries.push([user, old && (await stillValid(password, old)) ? old : await hashPassword(password, cost)]);
  }
  return renderUsersFile(entries);
}
