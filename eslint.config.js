// Lint that keeps the code honest: type-aware rules catch floating promises (a lost await in the mail
// path is a lost message), and complexity/depth bounds keep modules readable top to bottom.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test/cluster/.build/**', '**/*.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      complexity: ['error', 20],
      'max-depth': ['error', 4],
      'no-console': 'off',
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      // async generators without await are the natural way to write a test body stream
      '@typescript-eslint/require-await': 'off',
      complexity: 'off',
    },
  },
  // The operator's controllers meet only in operator/shared/: neither imports the other's folder, and
  // what they share imports neither.
  ...[
    ['operator/smtprelay/**/*.ts', ['**/maildomain/**']],
    ['operator/maildomain/**/*.ts', ['**/smtprelay/**']],
    ['operator/shared/**/*.ts', ['**/maildomain/**', '**/smtprelay/**']],
  ].map(([files, group]) => ({
    files: [files],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group, message: 'controllers share code through operator/shared/' }] },
      ],
    },
  })),
  // One writer of queued mail (Postfix: only qmgr moves queue files): outside the queue manager, relay
  // code may add messages to the spool (accept) but not change or remove them; it asks the queue manager.
  {
    files: ['relay/**/*.ts'],
    ignores: ['relay/delivery/queue-manager.ts', 'relay/spool/spool.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        ...["[object.name='spool']", "[object.property.name='spool']"].map((receiver) => ({
          selector: `CallExpression > MemberExpression.callee${receiver}[property.name=/^(saveState|remove|quarantine)$/]`,
          message:
            'only the queue manager changes a queued message: ask it (retryNow, delete, handedOff, quarantine)',
        })),
      ],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
);
