import type * as z from 'zod/mini'
import { ApiError } from '../errors.ts'
import { REFUSED_FIELDS } from './refused-fields.ts'

type Issue = z.core.$ZodIssue

/**
 * Checks `body` against a schema; the first problem becomes a 400 whose `param` names the field.
 * A field the schema does not know gets OpenAI's own answer ("Unrecognized request argument
 * supplied: FIELD"), or, for a vLLM field that cannot work here, the reason (REFUSED_FIELDS).
 */
export function parseWith<T extends z.ZodMiniType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body)
  if (result.success) return result.data
  const issue = result.error.issues[0]
  if (!issue) throw new ApiError(400, 'Invalid request.', { code: 'invalid_value' })
  if (issue.code === 'unrecognized_keys') throw unknownField(issue.path, issue.keys)
  const param = formatPath(issue.path)
  const detail = describe(issue)
  throw new ApiError(400, param ? `Invalid value for '${param}': ${detail}` : detail, { param, code: 'invalid_value' })
}

function unknownField(path: readonly PropertyKey[], keys: readonly string[]): ApiError {
  const key = keys[0] ?? ''
  const param = formatPath([...path, key]) ?? key
  const reason = path.length === 0 && Object.hasOwn(REFUSED_FIELDS, key) ? REFUSED_FIELDS[key] : undefined
  if (reason) return new ApiError(400, `'${param}' ${reason}`, { param, code: 'unsupported_parameter' })
  return new ApiError(400, `Unrecognized request argument supplied: ${param}`, { param, code: 'unknown_parameter' })
}

/** The schema's own message, or a plain one for zod's generic "Invalid input". */
function describe(issue: Issue): string {
  if (issue.code === 'invalid_key' || issue.code === 'invalid_element') {
    const inner = issue.issues[0]
    if (inner && inner.message !== 'Invalid input') return inner.message
  }
  if (issue.message !== 'Invalid input') return issue.message
  if (issue.code === 'invalid_type') return `expected ${article(issue.expected)}.`
  if (issue.code === 'invalid_value') return `expected one of ${issue.values.map((value) => JSON.stringify(value)).join(', ')}.`
  return 'Invalid input.'
}

function article(expected: string): string {
  const names: Record<string, string> = { int: 'an integer', array: 'an array', object: 'an object', record: 'an object' }
  return names[expected] ?? `a ${expected}`
}

/** ['messages', 0, 'content'] -> "messages[0].content", as OpenAI names parameters. */
function formatPath(path: readonly PropertyKey[]): string | null {
  let name = ''
  for (const key of path) {
    name += typeof key === 'number' ? `[${key}]` : `${name ? '.' : ''}${String(key)}`
  }
  return name || null
}
