/** `npm run generate`: writes every generated file (see files.ts) under the current directory (the repo root). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { generatedFiles } from './files.js';

const root = process.cwd();
for (const [rel, content] of generatedFiles()) {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  console.log(`wrote ${rel}`);
}
