// The sampling parameters that change the shape of the output: n, stop strings, stop token
// ids, include_stop_str_in_output and min_tokens (vllm/sampling_params.py SamplingParams, built
// from the request by protocol.py ChatCompletionRequest/CompletionRequest to_sampling_params).
// Their validation (types, ranges) belongs to validate.ts; this only reads what is there, so a
// field of the wrong type counts as absent here.

export type Sampling = {
  /** Choices generated for the prompt (vLLM: one child request each, parallel_sampling.py). */
  n: number
  /** Stop strings; vLLM turns a single string into a one-element list (SamplingParams.__post_init__). */
  stop: readonly string[]
  /** Token ids that end a choice with stop_reason = the id (v1/core/sched/utils.py check_stop). */
  stopTokenIds: readonly number[]
  /** Keep the matched stop string in the text (detokenizer.py check_stop_strings include_in_output). */
  includeStopStrInOutput: boolean
  /** No stop (EOS, stop ids, stop strings) before this many output tokens. */
  minTokens: number
}

export const DEFAULT_SAMPLING: Sampling = { n: 1, stop: [], stopTokenIds: [], includeStopStrInOutput: false, minTokens: 0 }

function positiveInt(value: unknown, fallback: number): number {
  return Number.isInteger(value) && (value as number) >= 1 ? (value as number) : fallback
}

function stopStrings(value: unknown): string[] {
  if (typeof value === 'string') return value === '' ? [] : [value]
  if (!Array.isArray(value)) return []
  // vLLM drops nothing here, but an empty stop string would match everywhere; validate.ts refuses it.
  return value.filter((item): item is string => typeof item === 'string' && item !== '')
}

/** The output-shaping sampling fields of a request body (chat or completion). */
export function parseSampling(body: { readonly [key: string]: unknown }): Sampling {
  const ids = Array.isArray(body.stop_token_ids) ? body.stop_token_ids.filter((id): id is number => Number.isInteger(id)) : []
  return {
    n: positiveInt(body.n, 1),
    stop: stopStrings(body.stop),
    stopTokenIds: ids,
    includeStopStrInOutput: body.include_stop_str_in_output === true,
    minTokens: Number.isInteger(body.min_tokens) && (body.min_tokens as number) > 0 ? (body.min_tokens as number) : 0,
  }
}
