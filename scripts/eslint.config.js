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
)
