import { formatList, formatShow } from '../../../../relay/delivery/cli.js';
import type { QueueItem } from '../../../../relay/delivery/queue-ops.js';

const item = (over: Partial<QueueItem> = {}): QueueItem => ({
  id: '0MWU4OLYO3L05MQCJ',
  size: 2048,
  arrivalTime: '2026-11-24T03:21:36.816Z',
  sender: 'app@example.com',
  state: 'deferred',
  attempts: 2,
  nextAttemptAt: '2026-11-24T03:31:36.816Z',
  lastError: 'connect ECONNREFUSED',
  recipients: [
    { address: 'a@x.test', status: 'pending', lastReply: '451 4.7.1 greylisted' },
    { address: 'b@x.test', status: 'pending', lastReply: '451 4.7.1 greylisted' },
    { address: 'c@y.test', status: 'delivered', lastReply: '250 ok' },
    { address: 'd@z.test', status: 'pending' },
  ],
  ...over,
});

test('list looks like postqueue -p: reasons above their recipients, delivered ones left out', () => {
  expect(
    formatList([
      item(),
      item({
        id: '0MWU4OLYO3L05MQCK',
        state: 'active',
        sender: '',
        recipients: [{ address: 'x@y', status: 'pending' }],
      }),
    ]),
  ).toEqual([
    '-Queue ID-         --Size-- ----Arrival Time---- -Sender/Recipient-------',
    '0MWU4OLYO3L05MQCJ      2048 Tue Nov 24 03:21:36  app@example.com',
    '                                                 (451 4.7.1 greylisted)',
    '                                                 a@x.test',
    '                                                 b@x.test',
    '                                                 d@z.test',
    '',
    '0MWU4OLYO3L05MQCK*     2048 Tue Nov 24 03:21:36  MAILER-DAEMON',
    '                                                 x@y',
    '',
    '-- 4 Kbytes in 2 Requests.',
  ]);
  expect(formatList([])).toEqual(['Mail queue is empty']);
});

test('show lists every recipient with its status and the headers', () => {
  const lines = formatShow({ ...item(), headers: 'From: app@example.com\r\nSubject: hi' });
  expect(lines).toContain('State:      deferred (attempts: 2, next attempt 2026-11-24T03:31:36.816Z)');
  expect(lines).toContain('  c@y.test  delivered  250 ok');
  expect(lines).toContain('  d@z.test  pending');
  expect(lines.slice(-2)).toEqual(['From: app@example.com', 'Subject: hi']);
});
