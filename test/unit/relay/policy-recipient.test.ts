import {
  checkRecipientCount,
  checkRecipientSyntax,
  recipientDomainDecision,
} from '../../../relay/policy/recipient.js';
import { parseMailbox, asciiDomain } from '../../../relay/policy/address.js';

describe('recipient policy', () => {
  test.each([
    ['user@example.com', true],
    ['first.last+tag@sub.example.co.uk', true],
    ['user@xn--bcher-kva.example', true],
    ['user@bücher.example', true],
    ['postmaster', false],
    ['user@[192.0.2.1]', false],
    ['user@localhost', false],
    ['user@exa_mple.com', false],
    ['user@-example.com', false],
    ['user@example.123', false],
    [`${'a'.repeat(65)}@example.com`, false],
    [`user@${'a'.repeat(64)}.com`, false],
  ])('syntax of %s → %s', (address, ok) => {
    expect(checkRecipientSyntax(address, false).ok).toBe(ok);
  });

  test('refused syntax is 501 5.1.3; the domain is normalised to A-labels', () => {
    expect(checkRecipientSyntax('postmaster', false)).toMatchObject({
      ok: false,
      reason: 'syntax',
      reply: { code: 501, enhanced: '5.1.3' },
    });
    expect(checkRecipientSyntax('User@Bücher.Example', false)).toMatchObject({
      ok: true,
      address: 'User@xn--bcher-kva.example',
    });
  });

  test('a non-ASCII local part needs SMTPUTF8 (553 5.6.7)', () => {
    expect(checkRecipientSyntax('jörg@example.com', false)).toMatchObject({
      ok: false,
      reply: { code: 553, enhanced: '5.6.7' },
    });
    expect(checkRecipientSyntax('jörg@example.com', true).ok).toBe(true);
  });

  test('recipient count: 452 4.5.3 past the limit, repeats do not count, local parts keep their case', () => {
    const two = ['a@example.com', 'b@example.com'];
    expect(checkRecipientCount(two, 'c@example.com', 3).ok).toBe(true);
    expect(checkRecipientCount(two, 'c@example.com', 2)).toMatchObject({
      ok: false,
      reason: 'too_many',
      reply: { code: 452, enhanced: '4.5.3' },
    });
    expect(checkRecipientCount(two, 'a@example.com', 2).ok).toBe(true);
    // Canonical addresses: the domain is already lower-case; "A" is another mailbox than "a".
    expect(checkRecipientCount(two, 'A@example.com', 2).ok).toBe(false);
    const canonical = (a: string) => (checkRecipientSyntax(a, false) as { address: string }).address;
    expect(canonical('a@EXAMPLE.com')).toBe('a@example.com');
    expect(checkRecipientCount(two, canonical('a@EXAMPLE.com'), 2).ok).toBe(true);
  });

  test.each([
    [{ kind: 'mx', hosts: [{ exchange: 'mx.example.com', priority: 10 }] }, true, undefined, undefined],
    [{ kind: 'implicit', hosts: [{ exchange: 'example.com', priority: 0 }] }, true, undefined, undefined],
    [{ kind: 'null-mx' }, false, 'null_mx', '556 5.1.10'],
    [{ kind: 'nxdomain' }, false, 'nxdomain', '550 5.1.2'],
    [{ kind: 'no-mail-host' }, false, 'no_mail_host', '550 5.1.2'],
    [{ kind: 'tempfail', error: 'ETIMEOUT' }, false, 'dns_tempfail', '451 4.4.3'],
  ] as const)('recipient domain %j', (hosts, ok, reason, codes) => {
    const d = recipientDomainDecision(hosts as never);
    expect(d.ok).toBe(ok);
    if (!d.ok) {
      expect(d.reason).toBe(reason);
      expect(`${d.reply.code} ${d.reply.enhanced}`).toBe(codes);
    }
  });

  test('mailbox parsing', () => {
    expect(parseMailbox('a@b')).toBe('syntax');
    expect(parseMailbox('@example.com')).toBe('syntax');
    expect(parseMailbox('"quoted local"@example.com')).toMatchObject({ local: '"quoted local"' });
    expect(parseMailbox('a b@example.com')).toBe('syntax');
    expect(asciiDomain('Example.COM.')).toBe('example.com');
  });
});
