// ESLint for the whole project (npm run lint). Kept in scripts/ so the top level stays as the
// design card names it; `basePath` points the patterns back at the project root.
import { fileURLToPath } from 'node:url'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {
    basePath: fileURLToPath(new URL('..', import.meta.url)),
    ignores: ['node_modules/**', 'dist/**', '.wrangler/**', 'bench/out/**', 'src/worker-configuration.d.ts'],
  },
  {
    basePath: fileURLToPath(new URL('..', import.meta.url)),
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommended],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': ['error', { allow: ['error', 'warn', 'log'] }],
      eqeqeq: ['error', 'smart'],
    },
  },
  {
    // The pages' browser scripts (src/pages/): classic scripts run by the browser as they are.
    // Undefined names are left to TypeScript, which checks them against the DOM (src/pages/tsconfig.json).
    basePath: fileURLToPath(new URL('..', import.meta.url)),
    files: ['src/pages/**/*.js'],
    extends: [tseslint.configs.recommended],
    languageOptions: { sourceType: 'script', ecmaVersion: 2022 },
    rules: {
      eqeqeq: ['error', 'smart'],
      'no-var': 'error',
      'prefer-const': 'error',
      'no-console': 'error',
      // Model output and server data are only ever set as text, never parsed as markup.
      'no-restricted-properties': [
        'error',
        ...['innerHTML', 'outerHTML', 'insertAdjacentHTML', 'write', 'writeln'].map((property) => ({
          property,
          message: 'Set text (textContent), never markup.',
        })),
      ],
    },
  },
)
