import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../../relay/config/load.js';
import { Replies, formatReply } from '../../../relay/policy/replies.js';
import { REPLY_DOCS, withReplyReference } from '../../../relay/policy/replies-reference.js';
import { configReferenceTable, withReference } from '../../../relay/config/reference.js';

const root = path.resolve(__dirname, '../../..');
const read = (file: string) => fs.readFileSync(path.join(root, file), 'utf8');

describe('relay documentation stays true to the code', () => {
  test('docs/relay-config.md carries the current reference table (MAILFLEET_UPDATE_DOCS=1 rewrites it)', () => {
    const file = path.join(root, 'docs/relay-config.md');
    const doc = fs.readFileSync(file, 'utf8');
    const fresh = withReference(doc);
    if (process.env.MAILFLEET_UPDATE_DOCS === '1' && fresh !== doc) fs.writeFileSync(file, fresh);
    else expect(doc).toBe(fresh);
    expect(configReferenceTable()).toContain('| `limits.maxRecipients` | integer |  | `100` |');
  });

  test('docs/relay-smtp.md carries the current reply table (MAILFLEET_UPDATE_DOCS=1 rewrites it)', () => {
    const file = path.join(root, 'docs/relay-smtp.md');
    const doc = fs.readFileSync(file, 'utf8');
    const fresh = withReplyReference(doc);
    if (process.env.MAILFLEET_UPDATE_DOCS === '1' && fresh !== doc) fs.writeFileSync(file, fresh);
    else expect(doc).toBe(fresh);
    for (const r of Object.values(Replies)) expect(fresh).toContain(formatReply(r));
  });

  test('a reply row that appends to the catalogue text starts with that text', () => {
    for (const [name, d] of Object.entries(REPLY_DOCS))
      if (d.wire) expect(d.wire.startsWith(formatReply(Replies[name as keyof typeof Replies]))).toBe(true);
  });

  test('every reply quoted anywhere in docs/relay-smtp.md is one the table lists', () => {
    const doc = read('docs/relay-smtp.md');
    const table = doc.slice(
      doc.indexOf('<!-- BEGIN generated from relay/policy'),
      doc.indexOf('<!-- END generated replies'),
    );
    const quoted = [...doc.matchAll(/`([2-5]\d\d [2-5]\.\d{1,3}\.\d{1,3} [^`]*)`/g)].map((m) => m[1]!);
    const unknown = quoted.filter((q) => !table.includes(`\`${q}\``));
    expect(unknown).toEqual([]);
  });

  test('examples/relay.yaml is a valid configuration', () => {
    const { config, files } = parseConfig(read('examples/relay.yaml'), {
      source: 'relay.yaml',
      baseDir: path.join(root, 'examples'),
    });
    expect(Object.keys(config.listeners).sort()).toEqual(['relay', 'smtps', 'submission']);
    expect(files.map((f) => f.field)).toEqual(expect.arrayContaining(['tls.certFile', 'auth.usersFile']));
  });
});
