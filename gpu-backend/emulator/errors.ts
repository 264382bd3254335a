// vLLM's error bodies, byte for byte: the pre-stream JSON response (Starlette's compact
// JSONResponse) and the mid-stream error event (Python json.dumps with its default spacing).

import { STATUS_CODES } from 'node:http'
import type { ErrorFormat } from './options.ts'

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

/**
 * An error vLLM answers before any streaming starts. `param`: ErrorInfo.param, which v0.20.2 sets
 * from a VLLMValidationError's `parameter` (entrypoints/utils.py create_error_response); null
 * (the default) otherwise, and always in v0.11.0.
 */
export type ApiError = { status: number; type: string; message: string; param?: string | null }

/** vLLM names error types after the status: 404 NotFoundError, 503 ServiceUnavailableError, ... */
export function errorTypeForStatus(status: number): string {
  const phrase = STATUS_CODES[status] ?? 'Unknown'
  const pascal = phrase
    .split(/[^A-Za-z0-9]+/)
    .filter((word) => word !== '')
    .map((word) => word[0]?.toUpperCase() + word.slice(1))
    .join('')
  return pascal.endsWith('Error') ? pascal : `${pascal}Error`
}

/**
 * Request-schema failures (bad JSON, missing fields) go through FastAPI's validation handler,
 * which since v0.10.1 uses the HTTP phrase "Bad Request" as the type; before that it said
 * "BadRequestError" like the serving layer does.
 */
export function schemaErrorType(format: ErrorFormat): string {
  return format === 'current' ? 'Bad Request' : 'BadRequestError'
}

function errorFields(format: ErrorFormat, error: ApiError): { [key: string]: Json } {
  const fields = { message: error.message, type: error.type, param: error.param ?? null, code: error.status }
  return format === 'current' ? fields : { object: 'error', ...fields }
}

/** The JSON body of a pre-stream error response (compact, like Starlette's JSONResponse). */
export function errorBody(format: ErrorFormat, error: ApiError): string {
  const fields = errorFields(format, error)
  return JSON.stringify(format === 'current' ? { error: fields } : fields)
}

/**
 * The SSE event vLLM sends when generation fails mid-stream. vLLM wraps the ErrorResponse
 * dump in {"error": ...} in both eras and serializes it with json.dumps, so it has spaces
 * after ':' and ',' and escapes non-ASCII, unlike the chunks.
 */
export function streamErrorEvent(format: ErrorFormat, error: ApiError): string {
  const body = format === 'current' ? { error: errorFields('current', error) } : { error: errorFields('legacy', error) }
  return `data: ${pythonJsonDumps(body)}\n\n`
}

/** Python's json.dumps(value) with default arguments (ensure_ascii=True, ", " and ": "). */
export function pythonJsonDumps(value: Json): string {
  if (value === null) return 'null'
  if (typeof value === 'boolean') return value ? 'true' : 'false'
  if (typeof value === 'number') return String(value)
  if (typeof value === 'string') return pythonString(value)
  if (Array.isArray(value)) return `[${value.map(pythonJsonDumps).join(', ')}]`
  const members = Object.entries(value).map(([key, member]) => `${pythonString(key)}: ${pythonJsonDumps(member)}`)
  return `{${members.join(', ')}}`
}

const SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  '\\': '\\\\',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
  '\b': '\\b',
  '\f': '\\f',
}

/** Escapes like Python's ensure_ascii encoder: everything outside ' '..'~' becomes \uXXXX (UTF-16 units). */
function pythonString(text: string): string {
  let out = '"'
  for (let index = 0; index < text.length; index++) {
    const char = text[index] ?? ''
    const code = text.charCodeAt(index)
    const short = SHORT_ESCAPES[char]
    if (short !== undefined) out += short
    else if (code < 0x20 || code > 0x7e) out += `\\u${code.toString(16).padStart(4, '0')}`
    else out += char
  }
  return `${out}"`
}
