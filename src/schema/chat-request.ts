import * as z from 'zod/mini'
import { intWhere, nonEmptyString, numberWhere, optional } from './fields.ts'
import { parseWith } from './parse.ts'
import { responseFormatSchema, structuredOutputsSchema, toolChoiceProblem, toolChoiceSchema, toolsSchema } from './structured.ts'

// The OpenAI chat request as this gateway accepts it: the fields and ranges of vLLM v0.11.0's
// ChatCompletionRequest (`vllm/entrypoints/openai/protocol.py`) and SamplingParams._verify_args
// (`vllm/sampling_params.py`), so what passes here is not refused by the backend for its form.
// The object is strict: a field not named here is a 400, never dropped. zod/mini keeps the
// Worker bundle small.

/** DeepSeek-R1-Distill-Qwen-1.5B's vocabulary (config.json vocab_size, vLLM's get_vocab_size). */
export const VOCAB_SIZE = 151_936

// Messages and content parts are strict too: vLLM's message types ignore a field they do not know
// (a TypedDict's extra keys), so one the gateway let through would be dropped silently.
const textPart = z.strictObject({ type: z.literal('text'), text: z.string() })
const content = z.union([z.string(), z.array(textPart)])
const systemFields = { content, name: z.optional(z.string()) }

const message = z.discriminatedUnion(
  'role',
  [
    z.strictObject({ role: z.literal('system'), ...systemFields }),
    // OpenAI's newer name for system. vLLM's template knows no developer role: it goes on as system.
    z.pipe(
      z.strictObject({ role: z.literal('developer'), ...systemFields }),
      z.transform((developer) => ({ ...developer, role: 'system' as const })),
    ),
    z.strictObject({ role: z.literal('user'), content, name: z.optional(z.string()) }),
    z.strictObject({
      role: z.literal('assistant'),
      content: z.optional(z.nullable(content)),
      name: z.optional(z.string()),
      reasoning_content: z.optional(z.nullable(z.string())),
    }),
  ],
  { error: "A message's role must be 'system', 'developer', 'user' or 'assistant' (tool messages are not relayed)." },
)

const maxTokens = (name: string) => optional(intWhere(name, (value) => value >= 1, 'must be at least 1'))
const penalty = (name: string) => optional(numberWhere(name, (value) => value >= -2 && value <= 2, 'must be in [-2, 2]'))
const tokenId = z.string().check(
  z.refine((key) => /^\d+$/.test(key) && Number(key) < VOCAB_SIZE, {
    error: (issue) => `logit_bias keys must be token ids in [0, ${VOCAB_SIZE}), got ${JSON.stringify(issue.input)}.`,
  }),
)
const stopText = nonEmptyString('stop cannot contain an empty string.')

export const chatRequestSchema = z
  .strictObject({
    model: optional(z.string()),
    messages: z.array(message).check(z.minLength(1, 'messages must contain at least one message.')),
    stream: optional(z.boolean()),
    stream_options: optional(z.strictObject({ include_usage: optional(z.boolean()), continuous_usage_stats: optional(z.boolean()) })),
    temperature: optional(numberWhere('temperature', (value) => value >= 0, 'must be non-negative')),
    top_p: optional(numberWhere('top_p', (value) => value > 0 && value <= 1, 'must be in (0, 1]')),
    // vLLM: 0 and -1 both disable top-k ("quietly accept -1 as disabled, but prefer 0").
    top_k: optional(intWhere('top_k', (value) => value >= -1, 'must be 0 (disable), or at least 1')),
    min_p: optional(numberWhere('min_p', (value) => value >= 0 && value <= 1, 'must be in [0, 1]')),
    repetition_penalty: optional(numberWhere('repetition_penalty', (value) => value > 0, 'must be greater than zero')),
    presence_penalty: penalty('presence_penalty'),
    frequency_penalty: penalty('frequency_penalty'),
    // vLLM clamps each bias into [-100, 100] (SamplingParams.from_optional); it refuses ids outside the vocabulary.
    logit_bias: optional(z.record(tokenId, z.number())),
    max_tokens: maxTokens('max_tokens'),
    max_completion_tokens: maxTokens('max_completion_tokens'),
    min_tokens: z.optional(intWhere('min_tokens', (value) => value >= 0, 'must be greater than or equal to 0')),
    // OpenAI's limit of four stop strings is kept; vLLM refuses an empty one.
    stop: optional(z.union([stopText, z.array(stopText).check(z.maxLength(4, 'stop takes at most 4 sequences.'))])),
    stop_token_ids: optional(z.array(z.int())),
    include_stop_str_in_output: z.optional(z.boolean()),
    ignore_eos: z.optional(z.boolean()),
    skip_special_tokens: z.optional(z.boolean()),
    spaces_between_special_tokens: z.optional(z.boolean()),
    bad_words: z.optional(z.array(z.string())),
    // The gateway's limit: every choice is generated and reserved against the key's tokens.
    n: optional(intWhere('n', (value) => value >= 1 && value <= 8, 'must be at least 1 and at most 8 on this gateway')),
    // vLLM V1 refuses best_of > 1 (`vllm/v1/engine/processor.py`, _validate_supported_sampling_params).
    best_of: optional(intWhere('best_of', (value) => value === 1, 'must be 1: vLLM V1 does not yet support best_of')),
    seed: optional(z.int()),
    logprobs: optional(z.boolean()),
    // vLLM's max_logprobs is 20 (ModelConfig); -1 would ask for the whole vocabulary.
    top_logprobs: optional(intWhere('top_logprobs', (value) => value >= 0 && value <= 20, 'must be in [0, 20]')),
    response_format: optional(responseFormatSchema),
    structured_outputs: optional(structuredOutputsSchema),
    tools: optional(toolsSchema),
    tool_choice: optional(toolChoiceSchema),
    parallel_tool_calls: optional(z.boolean()),
    // The key's priority class sets vLLM's priority (src/chat/prepare.ts priorityFor): a client
    // cannot move its own requests ahead of another key's.
    priority: z.optional(
      intWhere('priority', (value) => value === 0, "must be 0: the API key's priority class sets it (docs/keys.md, Priority)"),
    ),
    cache_salt: optional(nonEmptyString("Parameter 'cache_salt' must be a non-empty string if provided.")),
    user: optional(z.string()),
  })
  .check(
    // protocol.py, validate_stream_options: Python truthiness, so an empty object passes.
    z.refine((request) => request.stream_options == null || Object.keys(request.stream_options).length === 0 || request.stream === true, {
      message: 'Stream options can only be defined when `stream=True`.',
      path: ['stream_options'],
    }),
    // protocol.py, check_logprobs.
    z.refine((request) => !request.top_logprobs || request.logprobs === true, {
      message: 'when using `top_logprobs`, `logprobs` must be set to true.',
      path: ['top_logprobs'],
    }),
    z.refine((request) => request.min_tokens == null || request.min_tokens <= (askedMaxTokens(request) ?? Number.POSITIVE_INFINITY), {
      error: (issue) => minTokensMessage(issue.input as ChatRequest),
      path: ['min_tokens'],
    }),
    z.refine((request) => request.best_of == null || (request.n ?? 1) <= request.best_of, {
      message: 'best_of must be greater than or equal to n.',
      path: ['best_of'],
    }),
    z.refine(
      (request) => request.response_format == null || request.response_format.type === 'text' || request.structured_outputs == null,
      {
        message: 'Use either response_format or structured_outputs, not both.',
        path: ['structured_outputs'],
      },
    ),
    z.refine((request) => toolChoiceProblem(request.tools, request.tool_choice) === null, {
      error: (issue) => toolChoiceProblem((issue.input as ChatRequest).tools, (issue.input as ChatRequest).tool_choice) ?? '',
      path: ['tool_choice'],
    }),
  )

export type ChatRequest = z.infer<typeof chatRequestSchema>
export type ChatMessage = ChatRequest['messages'][number]

/** The output cap the request itself sets: vLLM reads `max_completion_tokens or max_tokens` (serving_engine.py). */
export function askedMaxTokens(request: Pick<ChatRequest, 'max_tokens' | 'max_completion_tokens'>): number | null {
  return request.max_completion_tokens || request.max_tokens || null
}

function minTokensMessage(request: ChatRequest): string {
  return `min_tokens must be less than or equal to max_tokens=${String(askedMaxTokens(request))}, got ${String(request.min_tokens)}.`
}

/** Checks a parsed JSON body; the first problem becomes a 400 whose `param` names the field. */
export function parseChatRequest(body: unknown): ChatRequest {
  return parseWith(chatRequestSchema, body)
}
