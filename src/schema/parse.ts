import type * as z from 'zod/mini'
import { ApiError } from '../errors.ts'

/** Checks `body` against a schema; the first problem becomes a 400 whose `param` names the field. */
export function parseWith<T extends z.ZodMiniType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  const param = issue ? formatPath(issue.path) : null
  const detail = issue?.message ?? 'Invalid request.'
  throw new ApiError(400, param ? `Invalid value for '${param}': ${detail}` : detail, { param, code: 'invalid_value' })
}

/** ['messages', 0, 'content'] -> "messages[0].content", as OpenAI names parameters. */
function formatPath(path: readonly PropertyKey[]): string | null {
  let name = ''
  for (const key of path) {
    name += typeof key === 'number' ? `[${key}]` : `${name ? '.' : ''}${String(key)}`
  }
  return name || null
}
