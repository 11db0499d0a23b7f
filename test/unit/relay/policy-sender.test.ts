import type { MailDomainConfig } from '../../../relay/config/schema.js';
import { Replies } from '../../../relay/policy/replies.js';
import {
  buildDomainIndex,
  checkSender,
  senderPattern,
  type SenderRequest,
} from '../../../relay/policy/sender.js';

const domain = (name: string, extra: Partial<MailDomainConfig> = {}): MailDomainConfig => ({
  name,
  allowedUsers: [],
  allowedSenders: [],
  ...extra,
});

const domains = buildDomainIndex([
  domain('example.com', { allowedUsers: ['alice', 'bob'] }),
  domain('alerts.example.org', {
    allowedUsers: ['*'],
    allowedSenders: ['*-alerts@alerts.example.org', 'noreply@alerts.example.org'],
  }),
  domain('Bücher.example', { allowedUsers: ['carol'] }),
]);

const submission = (
  mailFrom: string,
  authUser: string | undefined,
  extra: Partial<SenderRequest> = {},
): SenderRequest => ({
  mailFrom,
  listener: 'submission',
  authUser,
  handoff: false,
  clientAllowed: true,
  smtputf8: false,
  ...extra,
});

describe('sender policy', () => {
  test.each([
    ['alice may send as her domain', submission('alice@example.com', 'alice'), true],
    ['domain match is case-insensitive', submission('Alice@EXAMPLE.com', 'alice'), true],
    ['a user not listed for the domain is refused', submission('alice@example.com', 'mallory'), false],
    ['an unconfigured domain is refused', submission('alice@example.net', 'alice'), false],
    ['a subdomain is a different domain', submission('alice@mail.example.com', 'alice'), false],
    ['"*" allows any authenticated user', submission('ops-alerts@alerts.example.org', 'anyone'), true],
    ['patterns apply when set', submission('ceo@alerts.example.org', 'anyone'), false],
    ['patterns match the whole address', submission('noreply@alerts.example.org', 'anyone'), true],
    ['an IDN sender domain matches its A-label config', submission('x@xn--bcher-kva.example', 'carol'), true],
  ])('%s', (_name, req, ok) => {
    expect(checkSender(req, domains).ok).toBe(ok);
  });

  test('submission without AUTH: 530 5.7.0', () => {
    const d = checkSender(submission('alice@example.com', undefined), domains);
    expect(d).toEqual({ ok: false, reason: 'not_authenticated', reply: Replies.authRequired });
    expect(Replies.authRequired).toMatchObject({ code: 530, enhanced: '5.7.0' });
  });

  test('refusals are 550 5.7.1 with a reason for metrics', () => {
    expect(checkSender(submission('alice@example.net', 'alice'), domains)).toMatchObject({
      ok: false,
      reason: 'sender_domain',
      reply: { code: 550, enhanced: '5.7.1' },
    });
    expect(checkSender(submission('alice@example.com', 'mallory'), domains)).toMatchObject({
      ok: false,
      reason: 'sender_not_allowed',
      reply: { code: 550, enhanced: '5.7.1' },
    });
  });

  test('syntax and the null sender', () => {
    expect(checkSender(submission('no-at-sign', 'alice'), domains)).toMatchObject({
      reason: 'sender_syntax',
      reply: { code: 501, enhanced: '5.1.7' },
    });
    expect(checkSender(submission('', 'alice'), domains)).toMatchObject({
      reason: 'sender_syntax',
      reply: { code: 550, enhanced: '5.7.1' },
    });
    expect(checkSender(submission('x@[192.0.2.1]', 'alice'), domains)).toMatchObject({
      reason: 'sender_syntax',
    });
  });

  test('a non-ASCII local part needs SMTPUTF8', () => {
    expect(checkSender(submission('jörg@example.com', 'alice'), domains)).toMatchObject({
      reply: Replies.senderNeedsSmtputf8,
    });
    expect(checkSender(submission('jörg@example.com', 'alice', { smtputf8: true }), domains).ok).toBe(true);
  });

  test('relay listener: configured domain and patterns, no user needed', () => {
    const relay = (mailFrom: string, clientAllowed = true): SenderRequest => ({
      mailFrom,
      listener: 'relay',
      handoff: false,
      clientAllowed,
      smtputf8: false,
    });
    expect(checkSender(relay('app@example.com'), domains).ok).toBe(true);
    expect(checkSender(relay('app@example.net'), domains)).toMatchObject({ reason: 'sender_domain' });
    expect(checkSender(relay('ceo@alerts.example.org'), domains)).toMatchObject({
      reason: 'sender_not_allowed',
    });
    // Defence in depth: an outsider that somehow got past connect is refused at MAIL.
    expect(checkSender(relay('app@example.com', false), domains)).toMatchObject({
      reason: 'not_authenticated',
      reply: { code: 550, enhanced: '5.7.1' },
    });
  });

  test('handoff keeps the envelope, null sender included', () => {
    expect(checkSender(submission('', 'mailfleet-handoff', { handoff: true }), domains)).toEqual({
      ok: true,
      address: '',
    });
    expect(
      checkSender(submission('someone@elsewhere.example', 'mailfleet-handoff', { handoff: true }), domains),
    ).toEqual({
      ok: true,
      address: 'someone@elsewhere.example',
    });
  });

  test('sender patterns: "*" is the only wildcard', () => {
    expect(senderPattern('a.b@example.com').test('aXb@example.com')).toBe(false);
    expect(senderPattern('*@example.com').test('anything+tag@example.com')).toBe(true);
    expect(senderPattern('x(y)@example.com').test('x(y)@example.com')).toBe(true);
  });
});
