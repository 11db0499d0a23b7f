import { hashPassword } from '../../../relay/auth/passwords.js';
import { UsersDb, UsersFileError } from '../../../relay/auth/users.js';

const cheap = { ln: 10, r: 8, p: 1 };

describe('users database', () => {
  test('verifies, caches successes per hash, and invalidates on a changed hash', async () => {
    let now = 0;
    const opts = { now: () => now, cacheTtlMs: 1000 };
    const text = `alice:${await hashPassword('secret', cheap)}\n`;
    const db = UsersDb.parse(text, 'users', opts);
    await expect(db.verify('alice', 'secret')).resolves.toBe(true);
    await expect(db.verify('alice', 'wrong')).resolves.toBe(false);
    await expect(db.verify('nobody', 'secret')).resolves.toBe(false);

    const t0 = process.hrtime.bigint();
    await expect(db.verify('alice', 'secret')).resolves.toBe(true); // from the cache
    expect(Number(process.hrtime.bigint() - t0) / 1e6).toBeLessThan(5);

    // Same file reloaded: the cache carries over. A new password for alice: it does not.
    const same = UsersDb.parse(text, 'users', opts);
    same.inheritCache(db);
    const changed = UsersDb.parse(`alice:${await hashPassword('new', cheap)}\n`, 'users', opts);
    changed.inheritCache(db);
    await expect(changed.verify('alice', 'secret')).resolves.toBe(false);
    await expect(changed.verify('alice', 'new')).resolves.toBe(true);
    now += 2000; // expired
    await expect(same.verify('alice', 'secret')).resolves.toBe(true);
  });

  test('a users file with a bad line is refused as a whole, naming the line', () => {
    expect(() => UsersDb.parse('alice:plaintext\n', 'users')).toThrow(UsersFileError);
    expect(() => UsersDb.parse('alice:plaintext\n', 'users')).toThrow(/line 1 \(user "alice"\)/);
  });
});
