/**
 * ESLint flat config (`npm run lint`, part of `npm test`).
 *
 * TypeScript (src/, test/): typescript-eslint's `recommended` plus the type-aware rules that catch
 * promise bugs — a promise nobody awaits or catches, a promise where a callback's void is expected,
 * an await on a non-promise. The whole `recommendedTypeChecked` set was measured and left out: its
 * findings here are deliberate patterns, not bugs (tests reading JSON.parse'd CLI output as `any`;
 * async interface methods without an await, so that a throw becomes a rejection; rethrowing a
 * stored `unknown` failure). Its many findings of `!` on indexed reads went away with
 * `noUncheckedIndexedAccess` in tsconfig, which makes those `!` necessary.
 * JavaScript (bench/, scripts/, test/helpers/*.js, configs): CommonJS under Node, `js` recommended.
 */
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'bench/corpus/', 'samples/'] },
  // A disable comment that no longer suppresses anything is an error, so stale ones go.
  { linterOptions: { reportUnusedDisableDirectives: 'error' } },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      // A leading underscore marks a binding kept for its position or to leave it out of a rest
      // object (`{ jobs: _jobs, ...rest }`, `(_o) => …`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: { ...globals.node } },
  },
);
