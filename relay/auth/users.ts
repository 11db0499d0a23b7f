/**
 * The SMTP AUTH user database: the users file (passwords.ts format) loaded into memory, and password
 * verification with a short-lived cache of successful verifications.
 *
 * Why a cache: an scrypt verification at the default cost takes tens of milliseconds of a libuv worker
 * thread (4 by default), so a client that opens a connection and authenticates per message would be
 * capped near a hundred messages per second by hashing alone. A successful (username, password) pair is
 * remembered as HMAC-SHA256(per-process random key, password) for `cacheTtlMs`, tied to the exact hash
 * it was verified against: a changed or removed user in a reloaded users file invalidates it, and a
 * wrong password never hits the cache. The plaintext is never stored; the random key never leaves the
 * process. Failures are not cached (the throttle handles guessing).
 *
 * Loading is all-or-nothing: a users file with any bad line is refused as a whole (the caller keeps the
 * previous database), so a typo never silently grants or drops access.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { parseUsersFile, verifyPassword, type ParsedHash } from './passwords.js';

export class UsersFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`users file ${file}: ${problems.join('; ')}`);
  }
}

interface CacheEntry {
  hash: ParsedHash;
  digest: Buffer;
  expires: number;
}

const cacheKey = randomBytes(32);
const digestOf = (password: string) => createHmac('sha256', cacheKey).update(password, 'utf8').digest();

export class UsersDb {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly users: ReadonlyMap<string, ParsedHash>,
    private readonly opts: { cacheTtlMs?: number; now?: () => number; maxCached?: number } = {},
  ) {}

  static empty(): UsersDb {
    return new UsersDb(new Map());
  }

  /** Parses users-file text; throws UsersFileError naming every bad line. */
  static parse(text: string, file: string, opts?: ConstructorParameters<typeof UsersDb>[1]): UsersDb {
    const { users, errors } = parseUsersFile(text);
    if (errors.length > 0) throw new UsersFileError(file, errors);
    return new UsersDb(users, opts);
  }

  static async load(file: string, opts?: ConstructorParameters<typeof UsersDb>[1]): Promise<UsersDb> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new UsersFileError(file, [`cannot read: ${(err as Error).message}`]);
    }
    return UsersDb.parse(text, file, opts);
  }

  get size(): number {
    return this.users.size;
  }

  has(username: string): boolean {
    return this.users.has(username);
  }

  /**
   * Carries cached verifications over to a reloaded database, for users whose hash did not change
   * (compared by value: the reload parses new objects).
   */
  inheritCache(previous: UsersDb): void {
    const now = this.now();
    for (const [user, entry] of previous.cache) {
      const hash = this.users.get(user);
      if (hash && entry.expires > now && sameHash(hash, entry.hash)) this.cache.set(user, { ...entry, hash });
    }
  }

  /** true when the user exists and the password matches its hash. Unknown users cost a hash too. */
  async verify(username: string, password: string): Promise<boolean> {
    const hash = this.users.get(username);
    if (!hash) {
      await verifyPassword(password, DUMMY_HASH); // same work as a real check: no user-existence oracle
      return false;
    }
    const digest = digestOf(password);
    const cached = this.cache.get(username);
    const now = this.now();
    if (cached && cached.hash === hash && cached.expires > now && timingSafeEqual(cached.digest, digest))
      return true;
    const ok = await verifyPassword(password, hash);
    if (ok && this.ttl() > 0) {
      this.cache.delete(username);
      this.cache.set(username, { hash, digest, expires: now + this.ttl() });
      const max = this.opts.maxCached ?? 10_000;
      while (this.cache.size > max) {
        const oldest = this.cache.keys().next();
        if (oldest.done) break;
        this.cache.delete(oldest.value);
      }
    }
    return ok;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private ttl(): number {
    return this.opts.cacheTtlMs ?? 5 * 60_000;
  }
}

function sameHash(a: ParsedHash, b: ParsedHash): boolean {
  return a.ln === b.ln && a.r === b.r && a.p === b.p && a.salt.equals(b.salt) && a.key.equals(b.key);
}

/** Verified against when the user does not exist; default cost, so timing matches a real user's. */
const DUMMY_HASH: ParsedHash = {
  ln: 15,
  r: 8,
  p: 1,
  salt: Buffer.alloc(16, 1),
  key: Buffer.alloc(32, 2),
};
