import {
  enhancedStatus,
  fromReply,
  isHostLevel,
  outcomesFromError,
  outcomesFromInfo,
} from '../../../../relay/delivery/replies.js';

describe('enhancedStatus', () => {
  test.each([
    ['250 2.0.0 Ok: queued as ABC', '2.0.0'],
    ['550 5.1.1 <x@y>: Recipient address rejected', '5.1.1'],
    ['451 4.7.1 Greylisted', '4.7.1'],
    ['550 no such user', '5.0.0'],
    ['452-4.2.2 Mailbox full', '4.2.2'],
    ['550 4.1.1 mismatched class', '5.0.0'],
    ['garbage', '4.0.0'],
  ])('%s → %s', (reply, status) => expect(enhancedStatus(reply)).toBe(status));
});

describe('fromReply', () => {
  test('classes decide the result; 503 defers', () => {
    expect(fromReply('a@x', '250 ok').result).toBe('delivered');
    expect(fromReply('a@x', '451 later').result).toBe('deferred');
    expect(fromReply('a@x', '550 5.1.1 nope', 'mx.x').result).toBe('bounced');
    expect(fromReply('a@x', '503 5.5.1 bad sequence')).toMatchObject({ result: 'deferred', status: '4.5.1' });
  });

  test('multi-line replies become one line, the remote MTA is kept', () => {
    expect(fromReply('a@x', '550-5.1.1 first\r\n550 5.1.1 second', 'mx.x')).toEqual({
      recipient: 'a@x',
      result: 'bounced',
      status: '5.1.1',
      reply: '550-5.1.1 first 550 5.1.1 second',
      fromRemote: true,
      remoteMta: 'mx.x',
    });
  });
});

describe('outcomesFromInfo (partial accept)', () => {
  test('accepted recipients are delivered, refused ones get their own reply', () => {
    const out = outcomesFromInfo(
      ['ok@x', 'bad@x', 'soft@x'],
      {
        accepted: ['ok@x'],
        rejected: ['bad@x', 'soft@x'],
        rejectedErrors: [
          {
            message: 'Recipient command failed',
            recipient: 'bad@x',
            response: '550 5.1.1 unknown',
            responseCode: 550,
          },
          {
            message: 'Recipient command failed',
            recipient: 'soft@x',
            response: '452 4.2.2 full',
            responseCode: 452,
          },
        ],
        response: '250 2.0.0 queued',
      },
      'mx.x',
    );
    expect(out.map((o) => [o.recipient, o.result, o.status])).toEqual([
      ['ok@x', 'delivered', '2.0.0'],
      ['bad@x', 'bounced', '5.1.1'],
      ['soft@x', 'deferred', '4.2.2'],
    ]);
  });
});

describe('outcomesFromError', () => {
  test('connection failures defer every recipient and are host-level', () => {
    const err = { message: 'connect ECONNREFUSED 127.0.0.1:2525', code: 'ECONNECTION', command: 'CONN' };
    expect(isHostLevel(err)).toBe(true);
    const out = outcomesFromError(['a@x', 'b@x'], err, 'mx1.x');
    expect(out.map((o) => [o.result, o.status, o.fromRemote])).toEqual([
      ['deferred', '4.4.1', false],
      ['deferred', '4.4.1', false],
    ]);
    expect(out[0]!.reply).toContain('ECONNREFUSED');
  });

  test('timeouts are 4.4.2, refused AUTH defers (4.7.0) even with a 5xx', () => {
    expect(outcomesFromError(['a@x'], { message: 'Timeout', code: 'ETIMEDOUT' })[0]!.status).toBe('4.4.2');
    const auth = {
      message: 'Invalid login: 535 5.7.8 bad',
      code: 'EAUTH',
      command: 'AUTH PLAIN',
      response: '535 5.7.8 bad',
      responseCode: 535,
    };
    expect(isHostLevel(auth)).toBe(true);
    expect(outcomesFromError(['a@x'], auth)[0]).toMatchObject({ result: 'deferred', status: '4.7.0' });
  });

  test('a 5xx greeting defers (next MX), a 421 anywhere is host-level', () => {
    expect(
      outcomesFromError(['a@x'], {
        message: 'x',
        code: 'EPROTOCOL',
        response: '554 go away',
        responseCode: 554,
      })[0]!.result,
    ).toBe('deferred');
    expect(
      isHostLevel({
        message: 'x',
        code: 'EENVELOPE',
        command: 'RCPT TO',
        response: '421 bye',
        responseCode: 421,
      }),
    ).toBe(true);
  });

  test('every recipient refused: each keeps its reply', () => {
    const err = {
      message: "Can't send mail - all recipients were rejected",
      code: 'EENVELOPE',
      command: 'RCPT TO',
      responseCode: 451,
      response: '451 later',
      rejectedErrors: [
        { message: 'x', recipient: 'a@x', response: '550 5.1.1 unknown', responseCode: 550 },
        { message: 'x', recipient: 'b@x', response: '451 4.3.0 later', responseCode: 451 },
      ],
    };
    expect(isHostLevel(err)).toBe(false);
    expect(outcomesFromError(['a@x', 'b@x'], err, 'mx.x').map((o) => [o.result, o.status])).toEqual([
      ['bounced', '5.1.1'],
      ['deferred', '4.3.0'],
    ]);
  });

  test('MAIL FROM and DATA replies judge every recipient of the transaction', () => {
    const data = {
      message: 'Message failed',
      code: 'EMESSAGE',
      command: 'DATA',
      response: '554 5.6.0 spam',
      responseCode: 554,
    };
    expect(outcomesFromError(['a@x', 'b@x'], data, 'mx.x').map((o) => [o.result, o.status])).toEqual([
      ['bounced', '5.6.0'],
      ['bounced', '5.6.0'],
    ]);
    const mail = {
      message: 'Mail command failed',
      code: 'EENVELOPE',
      command: 'MAIL FROM',
      response: '452 4.3.1 full',
      responseCode: 452,
    };
    expect(outcomesFromError(['a@x'], mail)[0]).toMatchObject({
      result: 'deferred',
      status: '4.3.1',
      fromRemote: true,
    });
  });
});
