/**
 * Random and mutated configurations against the config loader (parseConfig → validateConfig →
 * buildRuntime), property-based and bounded. For every input the loader either returns a config or
 * throws a ConfigError (a RuntimeError for files it cannot read) whose every problem is one line that
 * says where (the source and line, "relay.yaml:12: ") — never another exception, never a hang.
 * Inputs: the shipped example with 1–4 mutations at random places (a field deleted, replaced by a value
 * of any JSON type, an unknown field added, a list item repeated), its YAML text with a byte inserted,
 * dropped or replaced, and arbitrary JSON values. Fixed count and seed (MAILFLEET_FUZZ_SEED overrides).
 */
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import YAML from 'yaml';
import { ConfigError, parseConfig, validateConfig } from '../../../relay/config/load.js';
import { buildRuntime, RuntimeError } from '../../../relay/runtime.js';
import { fuzzParams } from '../../helpers/smtp-fuzz.js';

jest.setTimeout(60_000);

const root = path.resolve(__dirname, '../../..');
const exampleText = fs.readFileSync(path.join(root, 'examples/relay.yaml'), 'utf8');
const example = YAML.parse(exampleText) as Record<string, unknown>;
const BASE_DIR = '/nonexistent/mailfleet';

type Path = (string | number)[];

/** Every path into the value (objects and arrays), the root excluded. */
function paths(value: unknown, prefix: Path = []): Path[] {
  if (value === null || typeof value !== 'object') return [];
  const entries: [string | number, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [i, v])
    : Object.entries(value as Record<string, unknown>);
  return entries.flatMap(([k, v]) => [[...prefix, k], ...paths(v, [...prefix, k])]);
}

type Mutation = { at: number; kind: 'delete' | 'replace' | 'unknown' | 'repeat'; value: unknown };

function applyMutation(obj: unknown, m: Mutation): unknown {
  const copy = structuredClone(obj);
  const all = paths(copy);
  if (all.length === 0) return m.value;
  const p = all[m.at % all.length]!;
  const parent = p.slice(0, -1).reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], copy) as
    Record<string, unknown> | unknown[];
  const key = p[p.length - 1]!;
  if (m.kind === 'delete') {
    if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else delete parent[key as string];
  } else if (m.kind === 'replace') {
    (parent as Record<string | number, unknown>)[key] = m.value;
  } else if (m.kind === 'unknown') {
    if (!Array.isArray(parent)) parent[`bogus${String(key)}`] = m.value;
  } else if (Array.isArray(parent)) {
    parent.push(structuredClone(parent[Number(key)]));
  }
  return copy;
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  at: fc.nat(),
  kind: fc.constantFrom('delete', 'replace', 'unknown', 'repeat'),
  value: fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.constantFrom(
      '',
      '0.0.0.0/0',
      '::/0',
      'not a cidr',
      -1,
      0,
      65536,
      1e300,
      '../../etc/passwd',
      '\0',
      'ü',
    ),
  ),
});

const mutatedText = fc
  .tuple(
    fc.nat({ max: exampleText.length }),
    fc.constantFrom('insert', 'drop', 'replace'),
    fc.string({ maxLength: 3 }),
  )
  .map(([at, how, s]) =>
    how === 'insert'
      ? exampleText.slice(0, at) + s + exampleText.slice(at)
      : how === 'drop'
        ? exampleText.slice(0, at) + exampleText.slice(at + 1 + s.length)
        : exampleText.slice(0, at) + s + exampleText.slice(at + s.length),
  );

const configText: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .array(mutation, { minLength: 1, maxLength: 4 })
      .map((ms) => YAML.stringify(ms.reduce<unknown>(applyMutation, example))),
  },
  { weight: 2, arbitrary: mutatedText },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => YAML.stringify(v)) },
);

/** Loads like the relay does; returns the problems, [] when the config was taken. */
async function load(text: string): Promise<string[]> {
  try {
    const loaded = parseConfig(text, { source: 'relay.yaml', baseDir: BASE_DIR });
    await buildRuntime(loaded); // the example's users and TLS files do not exist here
    return [];
  } catch (err) {
    if (err instanceof ConfigError || err instanceof RuntimeError) return err.problems;
    throw err;
  }
}

describe('config loader under random and mutated configs (property-based, bounded)', () => {
  test('every input is taken or refused with problems that say where; nothing else is thrown', async () => {
    await fc.assert(
      fc.asyncProperty(configText, async (text) => {
        const problems = await load(text);
        for (const p of problems) {
          expect(p).toMatch(/\S/);
          expect(p).not.toMatch(/[\r\n]/);
          expect(p.length).toBeLessThan(2000);
        }
      }),
      fuzzParams(200),
    );
  });

  test('a ConfigError always locates its problems (source and line)', () => {
    fc.assert(
      fc.property(configText, (text) => {
        try {
          parseConfig(text, { source: 'relay.yaml', baseDir: BASE_DIR });
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
          expect(err.problems.length).toBeGreaterThan(0);
          for (const p of err.problems) expect(p).toMatch(/^relay\.yaml:(\d+|\?)?:? /);
        }
      }),
      fuzzParams(200),
    );
  });

  test('values that are not a mapping are refused as such', () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(null), fc.string(), fc.integer(), fc.array(fc.jsonValue())), (raw) => {
        expect(() => validateConfig(raw, { source: 'x', baseDir: BASE_DIR })).toThrow(ConfigError);
      }),
      fuzzParams(100),
    );
  });
});
