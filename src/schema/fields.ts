import * as z from 'zod/mini'

// Field builders whose refusals read like vLLM's own (`vllm/sampling_params.py`, `_verify_args`:
// "top_p must be in (0, 1], got 0."), so a client sees the same rule from the gateway as it
// would from the backend.

/** null and absent both mean "the backend's default", as in vLLM's Optional fields. */
export const optional = <T extends z.core.SomeType>(schema: T) => z.optional(z.nullable(schema))

const got = (input: unknown) => (typeof input === 'string' ? JSON.stringify(input) : String(input))

/** A number with a rule; the refusal is "NAME RULE, got VALUE." */
export function numberWhere(name: string, ok: (value: number) => boolean, rule: string) {
  return z.number().check(z.refine(ok, { error: (issue) => `${name} ${rule}, got ${got(issue.input)}.` }))
}

/** An integer (a JSON number with no fraction) with a rule. */
export function intWhere(name: string, ok: (value: number) => boolean, rule: string) {
  return z.int().check(z.refine(ok, { error: (issue) => `${name} ${rule}, got ${got(issue.input)}.` }))
}

/** A string that may not be empty. */
export function nonEmptyString(message: string) {
  return z.string().check(z.minLength(1, message))
}
