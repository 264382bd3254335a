import * as z from 'zod/mini'
import { readContextRefusal } from '../dispatch/context-refusal.ts'
import { ApiError } from '../errors.ts'
import { intWhere, numberWhere, optional } from '../schema/fields.ts'
import { parseWith } from '../schema/parse.ts'
import type { ConversationItem } from './items.ts'

// The OpenAI Responses request (`POST /v1/responses`) as this gateway accepts it: text generation,
// translated into a chat completions body that then goes through the chat route's own checks,
// prompt rules and limits (src/chat/prepare.ts). The object is strict like the chat request's: a
// field not named here is a 400, never dropped. What the deployment or the model cannot do (stored
// responses when storage is off, tools) is refused by name (RESPONSES_REFUSALS). What a request
// continues (previous_response_id, item_reference) is read by src/responses/store.ts.

// Strict like the chat request's messages and parts: a field not named here is a 400 with its path.
const part = z.strictObject({
  type: z.enum(['input_text', 'output_text']),
  text: z.string(),
  // What an earlier response's output_text carries when it is sent back as input.
  annotations: z.optional(z.array(z.unknown())),
  logprobs: z.optional(z.array(z.unknown())),
})
const messageItem = z.strictObject({
  type: z.optional(z.literal('message')),
  id: z.optional(z.string()),
  status: z.optional(z.string()),
  role: z.enum(['user', 'assistant', 'system', 'developer']),
  content: z.union([z.string(), z.array(part)]),
})
const textPart = z.object({ text: z.string() })
/**
 * An earlier response's reasoning item sent back: kept in a stored conversation (its text only;
 * other fields such as encrypted_content are not read), never sent to the model, as the prompt
 * rules drop earlier reasoning.
 */
const reasoningItem = z.object({
  type: z.literal('reasoning'),
  summary: z.optional(z.array(textPart)),
  content: z.optional(z.nullable(z.array(textPart))),
})
/** An item of a stored response, by its id (src/responses/store.ts reads it). */
const itemReference = z.strictObject({ type: z.literal('item_reference'), id: z.string() })

const format = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('text') }),
  z.strictObject({ type: z.literal('json_object') }),
  z.strictObject({
    type: z.literal('json_schema'),
    name: z.string(),
    schema: z.record(z.string(), z.unknown()),
    description: z.optional(z.string()),
    strict: optional(z.boolean()),
  }),
])

export const responsesRequestSchema = z.strictObject({
  model: optional(z.string()),
  input: z.union([z.string(), z.array(z.discriminatedUnion('type', [messageItem, reasoningItem, itemReference]))]),
  instructions: optional(z.string()),
  max_output_tokens: optional(intWhere('max_output_tokens', (value) => value >= 1, 'must be at least 1')),
  temperature: optional(numberWhere('temperature', (value) => value >= 0 && value <= 2, 'must be in [0, 2]')),
  top_p: optional(numberWhere('top_p', (value) => value > 0 && value <= 1, 'must be in (0, 1]')),
  text: optional(z.strictObject({ format: optional(format) })),
  stream: optional(z.boolean()),
  // OpenAI's limits: 16 pairs, keys up to 64 characters, values up to 512.
  metadata: optional(
    z
      .record(
        z.string().check(z.maxLength(64, 'metadata keys take at most 64 characters.')),
        z.string().check(z.maxLength(512, 'metadata values take at most 512 characters.')),
      )
      .check(z.refine((pairs) => Object.keys(pairs).length <= 16, 'metadata takes at most 16 pairs.')),
  ),
  user: optional(z.string()),
  // Refused when the deployment stores nothing (see STORAGE_REFUSALS).
  store: optional(z.boolean()),
  background: optional(z.boolean()),
  previous_response_id: optional(z.string()),
  tools: optional(z.array(z.unknown())),
  tool_choice: optional(z.unknown()),
  parallel_tool_calls: optional(z.boolean()),
  reasoning: optional(z.strictObject({ summary: optional(z.enum(['auto', 'concise', 'detailed'])), effort: optional(z.string()) })),
  // The AI SDK asks for encrypted reasoning when store is false: the reasoning here is plain text
  // in the response already, and earlier reasoning is not sent back to the model anyway.
  include: optional(
    z.array(
      z.literal('reasoning.encrypted_content', {
        error: "The only include value available is 'reasoning.encrypted_content' (the reasoning is sent as plain text).",
      }),
    ),
  ),
})

export type ResponsesRequest = z.infer<typeof responsesRequestSchema>

type Refusal = { param: string; asks: (request: ResponsesRequest) => boolean; reason: string }

/** What needs stored responses, refused when the deployment keeps none (RESPONSE_RETENTION_DAYS = 0). */
const STORAGE_REFUSALS: readonly Refusal[] = [
  {
    param: 'store',
    asks: (request) => request.store === true,
    reason:
      'is not available: this deployment keeps no responses. Send store: false (or leave it out) and the whole conversation as input.',
  },
  {
    param: 'previous_response_id',
    asks: (request) => request.previous_response_id != null,
    reason: 'is not available: this deployment keeps no responses. Send the earlier turns as input items.',
  },
]

/** Each field that asks for what this gateway in front of a tool-less model cannot do, with why. */
const RESPONSES_REFUSALS: readonly Refusal[] = [
  {
    param: 'background',
    asks: (request) => request.background === true,
    reason: 'is not available: background responses are not run here. Use stream: true for a long answer.',
  },
  {
    param: 'tools',
    asks: (request) => (request.tools?.length ?? 0) > 0,
    reason: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B cannot call tools.',
  },
  {
    param: 'tool_choice',
    asks: (request) => request.tool_choice != null && request.tool_choice !== 'none' && request.tool_choice !== 'auto',
    reason: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B cannot call tools.',
  },
  {
    param: 'reasoning.effort',
    asks: (request) => request.reasoning?.effort != null,
    reason: 'has no effect on DeepSeek-R1-Distill, which always reasons.',
  },
]

/**
 * Checks a parsed JSON body; the first problem becomes a 400 whose `param` names the field.
 * `storing`: the deployment keeps responses (else what needs them is refused).
 */
export function parseResponsesRequest(body: unknown, storing: boolean): ResponsesRequest {
  refuseInputItems(body, storing)
  const request = parseWith(responsesRequestSchema, body)
  for (const refusal of storing ? RESPONSES_REFUSALS : [...STORAGE_REFUSALS, ...RESPONSES_REFUSALS]) {
    if (refusal.asks(request)) {
      throw new ApiError(400, `'${refusal.param}' ${refusal.reason}`, { param: refusal.param, code: 'unsupported_parameter' })
    }
  }
  return request
}

const ITEM_REASONS: Readonly<Record<string, string>> = {
  item_reference:
    'needs stored responses, which this deployment does not keep: send the item itself (the AI SDK does with providerOptions.openai.store = false).',
}

/** An input item of a type not taken, named by its place: a clearer 400 than the schema's. */
function refuseInputItems(body: unknown, storing: boolean): void {
  const input = typeof body === 'object' && body !== null && 'input' in body ? body.input : null
  if (!Array.isArray(input)) return
  input.forEach((item: unknown, index) => {
    const type = typeof item === 'object' && item !== null && 'type' in item ? item.type : undefined
    if (type === undefined || type === 'message' || type === 'reasoning' || (storing && type === 'item_reference')) return
    const param = `input[${index}]`
    const key = String(type)
    const reason = Object.hasOwn(ITEM_REASONS, key)
      ? ITEM_REASONS[key]
      : 'is not available: only message and reasoning items are (this model cannot call tools).'
    throw new ApiError(400, `Input items of type ${JSON.stringify(type)} ${reason}`, { param, code: 'unsupported_parameter' })
  })
}

type ChatMessageBody = { role: 'system' | 'user' | 'assistant'; content: string | { type: 'text'; text: string }[] }

/**
 * The chat completions body that asks for the same generation, given the turn's context (earlier
 * turns read from the store, then the request's own input: src/responses/store.ts). `instructions`
 * goes first as a system message, so the prompt rules fold it into the first user turn as they
 * fold any system prompt; developer messages are system messages for the same reason. Reasoning
 * items are left out, as the prompt rules leave out earlier reasoning.
 */
export function toChatBody(request: ResponsesRequest, context: readonly ConversationItem[]): Record<string, unknown> {
  const messages: ChatMessageBody[] = []
  if (request.instructions) messages.push({ role: 'system', content: request.instructions })
  for (const item of context) {
    if (item.type !== 'message') continue
    const [only, ...more] = item.content
    const content = only && more.length === 0 ? only.text : item.content.map((part) => ({ type: 'text' as const, text: part.text }))
    messages.push({ role: item.role === 'developer' ? 'system' : item.role, content })
  }
  const body: Record<string, unknown> = { messages }
  if (request.model != null) body.model = request.model
  if (request.stream != null) body.stream = request.stream
  if (request.temperature != null) body.temperature = request.temperature
  if (request.top_p != null) body.top_p = request.top_p
  if (request.max_output_tokens != null) body.max_tokens = request.max_output_tokens
  if (request.user != null) body.user = request.user
  const responseFormat = chatResponseFormat(request)
  if (responseFormat) body.response_format = responseFormat
  return body
}

function chatResponseFormat(request: ResponsesRequest): Record<string, unknown> | null {
  const asked = request.text?.format
  if (!asked || asked.type === 'text') return null
  if (asked.type === 'json_object') return { type: 'json_object' }
  const { name, schema, description, strict } = asked
  return {
    type: 'json_schema',
    json_schema: { name, schema, ...(description != null ? { description } : {}), ...(strict != null ? { strict } : {}) },
  }
}

/** Chat field names in a refusal of the translated body, as the Responses request names them. */
const PARAM_NAMES: ReadonlyArray<[RegExp, string]> = [
  [/^response_format\.json_schema/, 'text.format'],
  [/^response_format/, 'text.format'],
  [/^max_tokens/, 'max_output_tokens'],
  [/^messages/, 'input'],
]

/**
 * The gateway's context refusal (src/schema/context-budget.ts) quotes vLLM's wording, which names
 * chat fields in prose ("the input messages"): reworded as a whole, since renaming the param
 * inside it would read "the input input".
 */
const CONTEXT_WORDING: ReadonlyArray<[string, string]> = [
  ["'max_tokens' or 'max_completion_tokens'", "'max_output_tokens'"],
  ['the input messages', 'the input'],
]

/**
 * A refusal of the translated chat body, naming the Responses field the client sent. A context
 * refusal (the gateway's own, or vLLM's relayed with param "messages" whatever it says) is named
 * by what its text states: the prompt alone is too long (`input`), or the asked output does not fit
 * (`max_output_tokens`); vLLM's numbers are kept.
 */
export function asResponsesError<T>(error: T): T | ApiError {
  if (!(error instanceof ApiError) || error.param === null) return error
  if (error.code === 'context_length_exceeded') {
    const refusal = readContextRefusal(error.message)
    const param = refusal ? (refusal.kind === 'prompt_too_long' ? 'input' : 'max_output_tokens') : renamedParam(error.param)
    if (param === null) return error
    const message = CONTEXT_WORDING.reduce((text, [chat, responses]) => text.replaceAll(chat, responses), error.message)
    return new ApiError(error.status, message, { type: error.type, code: error.code, param })
  }
  const name = renamedParam(error.param)
  if (name === null) return error
  return new ApiError(error.status, error.message.replaceAll(error.param, name), { type: error.type, code: error.code, param: name })
}

function renamedParam(param: string): string | null {
  const renamed = PARAM_NAMES.find(([pattern]) => pattern.test(param))
  return renamed ? param.replace(renamed[0], renamed[1]) : null
}
