import { checkMailParameters, checkRcptParameters } from '../../../relay/policy/parameters.js';
import { formatReply } from '../../../relay/policy/replies.js';

const mail = (args: Record<string, string | boolean> | false, authOffered = false) =>
  checkMailParameters(args, { authOffered });
const refusal = (d: { ok: boolean; reply?: Parameters<typeof formatReply>[0] }) =>
  d.ok ? 'accepted' : formatReply(d.reply!);

describe('MAIL FROM parameters', () => {
  test('SIZE, BODY and SMTPUTF8 are taken and read', () => {
    expect(mail(false)).toEqual({ ok: true, params: { smtputf8: false, bodyType: '7BIT' } });
    expect(mail({ SIZE: '1200', BODY: '8bitmime', SMTPUTF8: true })).toEqual({
      ok: true,
      params: { smtputf8: true, bodyType: '8BITMIME', size: 1200 },
    });
    expect(mail({ BODY: '7BIT' })).toMatchObject({ params: { bodyType: '7BIT' } });
  });

  test.each([
    ['FOO', 'bar', '555 5.5.4 MAIL FROM parameter not supported: FOO'],
    ['RET', 'FULL', '555 5.5.4 MAIL FROM parameter not supported: RET'],
    ['ENVID', 'abc', '555 5.5.4 MAIL FROM parameter not supported: ENVID'],
    ['REQUIRETLS', true, '555 5.5.4 MAIL FROM parameter not supported: REQUIRETLS'],
    ['AUTH', '<>', '555 5.5.4 MAIL FROM parameter not supported: AUTH'],
    ['X\u0001Y', 'z', '555 5.5.4 MAIL FROM parameter not supported'],
    ['A'.repeat(40), 'z', '555 5.5.4 MAIL FROM parameter not supported'],
  ])('%j=%j is refused (%s), named only when it is a plain keyword', (name, value, reply) => {
    expect(refusal(mail({ SIZE: '10', [name]: value }))).toBe(reply);
  });

  test('AUTH= is taken (and ignored) only where AUTH is offered (RFC 4954 §5)', () => {
    expect(mail({ AUTH: '<>' }, true)).toEqual({ ok: true, params: { smtputf8: false, bodyType: '7BIT' } });
    expect(mail({ AUTH: '<>' }, false).ok).toBe(false);
  });
});

describe('RCPT TO parameters', () => {
  test('none is taken: DSN NOTIFY/ORCPT and anything else get 555 5.5.4', () => {
    expect(checkRcptParameters(false)).toEqual({ ok: true });
    expect(checkRcptParameters({})).toEqual({ ok: true });
    expect(refusal(checkRcptParameters({ NOTIFY: 'SUCCESS,FAILURE' }))).toBe(
      '555 5.5.4 RCPT TO parameter not supported: NOTIFY',
    );
    expect(refusal(checkRcptParameters({ ORCPT: 'rfc822;a@b.c' }))).toBe(
      '555 5.5.4 RCPT TO parameter not supported: ORCPT',
    );
  });
});
