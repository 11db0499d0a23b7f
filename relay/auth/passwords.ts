/**
 * Password hashes for SMTP AUTH, in PHC string form: `$scrypt$ln=15,r=8,p=1$<salt b64>$<hash b64>`.
 *
 * The relay verifies against these; the operator writes them into the users Secret. scrypt is built
 * into Node (no native addon) and memory-hard. Plain passwords are never stored or logged: only this
 * module sees them, and only long enough to hash.
 *
 * Users file format (`auth.usersFile`): one `username:phc-hash` per line; blank lines and lines
 * starting with `#` are ignored.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const KEY_LENGTH = 32;
const SALT_LENGTH = 16;
/** log2(N). 2^15 with r=8 costs 32 MiB and a few tens of milliseconds per verification. */
export const DEFAULT_COST = { ln: 15, r: 8, p: 1 } as const;

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))),
  );
}

function scryptOptions(ln: number, r: number, p: number): ScryptOptions {
  const N = 2 ** ln;
  return { N, r, p, maxmem: 256 * N * r + 1024 * 1024 };
}

const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

export async function hashPassword(
  password: string,
  cost: { ln: number; r: number; p: number } = DEFAULT_COST,
) {
  const salt = randomBytes(SALT_LENGTH);
  const key = await scrypt(password, salt, KEY_LENGTH, scryptOptions(cost.ln, cost.r, cost.p));
  return `$scrypt$ln=${cost.ln},r=${cost.r},p=${cost.p}$${b64(salt)}$${b64(key)}`;
}

export interface ParsedHash {
  ln: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** Parses a PHC scrypt string; returns an error message naming what is wrong instead of throwing. */
export function parseHash(phc: string): ParsedHash | string {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,3}),p=(\d{1,3})\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(phc);
  if (!m) return 'not a $scrypt$ln=..,r=..,p=..$salt$hash string';
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (ln < 10 || ln > 22) return `scrypt ln=${ln} out of range 10..22`;
  if (r < 1 || p < 1) return 'scrypt r and p must be at least 1';
  return { ln, r, p, salt: Buffer.from(m[4]!, 'base64'), key: Buffer.from(m[5]!, 'base64') };
}

export async function verifyPassword(password: string, hash: ParsedHash): Promise<boolean> {
  const key = await scrypt(password, hash.salt, hash.key.length, scryptOptions(hash.ln, hash.r, hash.p));
  return key.length === hash.key.length && timingSafeEqual(key, hash.key);
}

export interface UsersFileEntry {
  username: string;
  hash: ParsedHash;
}

/** Parses a users file. Errors name the line; a bad line never silently grants or drops access. */
export function parseUsersFile(text: string): { users: Map<string, ParsedHash>; errors: string[] } {
  const users = new Map<string, ParsedHash>();
  const errors: string[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) {
      errors.push(`line ${i + 1}: expected "username:hash"`);
      return;
    }
    const username = line.slice(0, colon);
    const parsed = parseHash(line.slice(colon + 1));
    if (typeof parsed === 'string') errors.push(`line ${i + 1} (user "${username}"): ${parsed}`);
    else if (users.has(username)) errors.push(`line ${i + 1}: user "${username}" is listed twice`);
    else users.set(username, parsed);
  });
  return { users, errors };
}

/** Renders a users file from username → PHC hash pairs (what the operator writes into a Secret). */
export function renderUsersFile(entries: Iterable<[string, string]>): string {
  return [...entries].map(([u, h]) => `${u}:${h}\n`).join('');
}
