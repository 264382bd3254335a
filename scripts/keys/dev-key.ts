// npm start's API key: kept in the git-ignored .dev.vars as DEV_API_KEY so it survives restarts,
// and replaced when local KV no longer accepts it (state wiped, key revoked or expired).
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isWellFormedSecret } from '../../src/auth/key-record.ts'
import { ROOT } from '../processes.ts'
import { keyStatus } from './format.ts'
import type { Kv } from './kv.ts'
import { createKey, findKeyBySecret } from './store.ts'

export interface DevKey {
  secret: string
  id: string
  /** True when this run made the key. */
  created: boolean
}

const LINE = /^DEV_API_KEY=(.*)$/m

export async function ensureDevKey(kv: Kv, file = join(ROOT, '.dev.vars')): Promise<DevKey> {
  const vars = existsSync(file) ? await readFile(file, 'utf8') : ''
  const existing = unquote(LINE.exec(vars)?.[1] ?? '')
  if (isWellFormedSecret(existing)) {
    const record = await findKeyBySecret(kv, existing)
    if (record && keyStatus(record) === 'active') return { secret: existing, id: record.id, created: false }
  }
  const { secret, record } = await createKey(kv, { name: 'local dev', scopes: ['chat', 'admin'] })
  await writeFile(file, withDevKey(vars, secret))
  return { secret, id: record.id, created: true }
}

/** .dev.vars with DEV_API_KEY set to `secret`, every other line as it was. */
export function withDevKey(vars: string, secret: string): string {
  const line = `DEV_API_KEY=${secret}`
  if (LINE.test(vars)) return vars.replace(LINE, () => line)
  return `${vars}${vars && !vars.endsWith('\n') ? '\n' : ''}${line}\n`
}

/** dotenv syntax allows the value in quotes. */
function unquote(value: string): string {
  const trimmed = value.trim()
  return /^(["']).*\1$/.test(trimmed) ? trimmed.slice(1, -1) : trimmed
}
