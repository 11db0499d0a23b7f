import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../../relay/config/load.js';
import { Replies, formatReply } from '../../../relay/policy/replies.js';
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

  test('every reply the relay composes is listed in docs/relay-smtp.md', () => {
    const doc = read('docs/relay-smtp.md');
    const missing = Object.values(Replies)
      .map((r) => formatReply(r))
      .filter((line) => !doc.includes(line));
    expect(missing).toEqual([]);
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
