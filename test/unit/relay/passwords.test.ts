import {
  hashPassword,
  parseHash,
  parseUsersFile,
  renderUsersFile,
  verifyPassword,
} from '../../../relay/auth/passwords.js';

const cheap = { ln: 10, r: 8, p: 1 };

describe('password hashes', () => {
  test('a hash verifies its own password and no other', async () => {
    const phc = await hashPassword('correct horse', cheap);
    expect(phc).toMatch(/^\$scrypt\$ln=10,r=8,p=1\$/);
    expect(phc).not.toContain('correct horse');
    const parsed = parseHash(phc);
    if (typeof parsed === 'string') throw new Error(parsed);
    await expect(verifyPassword('correct horse', parsed)).resolves.toBe(true);
    await expect(verifyPassword('correct horsE', parsed)).resolves.toBe(false);
  });

  test('two hashes of one password differ (random salt)', async () => {
    expect(await hashPassword('x', cheap)).not.toBe(await hashPassword('x', cheap));
  });

  test('malformed hashes are described, not thrown', () => {
    expect(parseHash('plaintext')).toMatch(/not a \$scrypt/);
    expect(parseHash('$scrypt$ln=40,r=8,p=1$c2FsdA$a2V5')).toMatch(/out of range/);
  });

  test('users file: round trip, comments, and errors that name the line', async () => {
    const text =
      renderUsersFile([['alice', await hashPassword('a', cheap)]]) + '# comment\n\nbob:nothash\nalice:x\n';
    const { users, errors } = parseUsersFile(text);
    expect([...users.keys()]).toEqual(['alice']);
    expect(errors).toEqual([
      expect.stringMatching(/^line 4 \(user "bob"\)/),
      expect.stringMatching(/^line 5/),
    ]);
  });
});
