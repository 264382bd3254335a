// How pydantic v2 (lax mode, as vLLM's request models use it) reads JSON values, and how vLLM
// prints its failures: FastAPI's RequestValidationError becomes a 400 whose message is the
// Python repr of the error list (api_server.py, validation_exception_handler). The echoed
// `input` of each error is left out: it may be a prompt.

export type Loc = readonly (string | number)[]

export type PydanticError = { type: string; loc: Loc; msg: string }

/** Python's repr of a str: single quotes unless the text has a single quote and no double quote. */
export function pyRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'"
  const body = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')
  return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote
}

/** Python's repr of a float (what f"{x}" prints): 0.0, 1.5, 1e-05, 1e+16. */
export function pyFloat(value: number): string {
  if (Number.isNaN(value)) return 'nan'
  if (!Number.isFinite(value)) return value > 0 ? 'inf' : '-inf'
  const [mantissa = '0', exponentText = '0'] = value.toExponential().split('e')
  const exponent = Number(exponentText)
  if (exponent < -4 || exponent >= 16) {
    const digits = String(Math.abs(exponent)).padStart(2, '0')
    return `${mantissa}e${exponent < 0 ? '-' : '+'}${digits}`
  }
  const fixed = String(value)
  return Number.isInteger(value) ? `${fixed}.0` : fixed
}

function errorRepr(error: PydanticError): string {
  const parts = error.loc.map((part) => (typeof part === 'number' ? String(part) : pyRepr(part)))
  const loc = `(${parts.join(', ')}${parts.length === 1 ? ',' : ''})`
  return `{'type': ${pyRepr(error.type)}, 'loc': ${loc}, 'msg': ${pyRepr(error.msg)}}`
}

/** The message of vLLM's 400 for a list of validation errors. */
export function formatErrors(errors: readonly PydanticError[]): string {
  return `[${errors.map(errorRepr).join(', ')}]`
}

/** A model_validator(mode="before") that raised ValueError: loc is the body itself. */
export function valueError(message: string): PydanticError {
  return { type: 'value_error', loc: ['body'], msg: `Value error, ${message}` }
}

export type Read<T> = { ok: true; value: T } | { ok: false; error: PydanticError }

const fail = (type: string, loc: Loc, msg: string): Read<never> => ({ ok: false, error: { type, loc, msg } })
const NUMBER_TEXT = /^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$/
const INT_TEXT = /^\s*[+-]?\d+(_\d+)*\s*$/

/** float: numbers, booleans and numeric strings (lax mode); the value as a Python float. */
export function readFloat(value: unknown, loc: Loc): Read<number> {
  if (typeof value === 'number') return { ok: true, value }
  if (typeof value === 'boolean') return { ok: true, value: value ? 1 : 0 }
  if (typeof value === 'string') {
    if (NUMBER_TEXT.test(value)) return { ok: true, value: Number(value) }
    return fail('float_parsing', loc, 'Input should be a valid number, unable to parse string as a number')
  }
  return fail('float_type', loc, 'Input should be a valid number')
}

/** int: integers, integral floats, booleans and integer strings (lax mode). */
export function readInt(value: unknown, loc: Loc): Read<number> {
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return { ok: true, value }
    return fail('int_from_float', loc, 'Input should be a valid integer, got a number with a fractional part')
  }
  if (typeof value === 'boolean') return { ok: true, value: value ? 1 : 0 }
  if (typeof value === 'string') {
    if (INT_TEXT.test(value)) return { ok: true, value: Number(value.replace(/_/g, '')) }
    return fail('int_parsing', loc, 'Input should be a valid integer, unable to parse string as an integer')
  }
  return fail('int_type', loc, 'Input should be a valid integer')
}

const TRUE_TEXTS = new Set(['1', 'on', 't', 'true', 'y', 'yes'])
const FALSE_TEXTS = new Set(['0', 'off', 'f', 'false', 'n', 'no'])

/** bool: booleans, 0/1 and pydantic's true/false words. */
export function readBool(value: unknown, loc: Loc): Read<boolean> {
  if (typeof value === 'boolean') return { ok: true, value }
  if (value === 0 || value === 1) return { ok: true, value: value === 1 }
  if (typeof value === 'string') {
    const text = value.toLowerCase()
    if (TRUE_TEXTS.has(text)) return { ok: true, value: true }
    if (FALSE_TEXTS.has(text)) return { ok: true, value: false }
  }
  if (typeof value === 'string' || typeof value === 'number') {
    return fail('bool_parsing', loc, 'Input should be a valid boolean, unable to interpret input')
  }
  return fail('bool_type', loc, 'Input should be a valid boolean')
}

export function readString(value: unknown, loc: Loc): Read<string> {
  if (typeof value === 'string') return { ok: true, value }
  return fail('string_type', loc, 'Input should be a valid string')
}

export type Dict = { [key: string]: unknown }

export function isDict(value: unknown): value is Dict {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

export function readDict(value: unknown, loc: Loc): Read<Dict> {
  if (isDict(value)) return { ok: true, value }
  return fail('dict_type', loc, 'Input should be a valid dictionary')
}

/** Reads `body[field]` when it is present and not null (every Optional field of vLLM's models). */
export function optional<T>(body: Dict, field: string, read: (value: unknown, loc: Loc) => Read<T>, errors: PydanticError[]): T | null {
  const value = body[field]
  if (value === undefined || value === null) return null
  const result = read(value, ['body', field])
  if (result.ok) return result.value
  errors.push(result.error)
  return null
}
