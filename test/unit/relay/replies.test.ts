import { Replies, ReplyError, formatReply, queuedText, replyError } from '../../../relay/policy/replies.js';

describe('reply catalogue', () => {
  test.each(Object.entries(Replies))('%s carries an enhanced code of its class', (_name, r) => {
    expect(r.enhanced).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/);
    expect(r.enhanced[0]).toBe(String(r.code)[0]);
    expect(r.text).not.toMatch(/[\r\n]/);
  });

  test('the codes the issue names', () => {
    const line = (r: keyof typeof Replies) => formatReply(Replies[r]).slice(0, 10).trim();
    expect(line('recipientNullMx')).toBe('556 5.1.10');
    expect(line('recipientNxDomain')).toBe('550 5.1.2');
    expect(line('recipientDnsTempFail')).toBe('451 4.4.3');
    expect(line('messageTooBig')).toBe('552 5.3.4');
    expect(line('rateLimited')).toBe('450 4.7.1');
    expect(line('tooManyRecipients')).toBe('452 4.5.3');
    expect(line('senderNotAllowed')).toBe('550 5.7.1');
    expect(line('vrfyNotDisclosed')).toBe('252 2.5.0');
    expect(line('expnDisabled')).toBe('502 5.5.1');
    expect(line('tooManyConnections')).toBe('421 4.3.2');
    expect(line('clientNotAllowed')).toBe('554 5.7.1');
  });

  test('an error for smtp-server: responseCode plus the enhanced code leading the text', () => {
    const err = replyError(Replies.rateLimited);
    expect(err).toBeInstanceOf(ReplyError);
    expect(err.responseCode).toBe(450);
    expect(err.message).toBe('4.7.1 Message rate limit exceeded, try again later');
    expect(queuedText('ABC')).toBe('2.0.0 Ok: queued as ABC');
  });
});
