import * as z from 'zod/mini'
import { ApiError } from '../errors.ts'
import { intWhere, nonEmptyString, numberWhere, optional } from '../schema/fields.ts'
import { parseWith } from '../schema/parse.ts'

// The Anthropic Messages request (`POST /v1/messages`, `POST /v1/messages/count_tokens`) as this
// gateway accepts it: text generation, translated into a chat completions body that then goes
// through the chat route's own checks, prompt rules and limits (src/chat/prepare.ts), as the
// Responses API's is. Strict like the chat request: a field not named here is a 400 naming it.
// What the model or the deployment cannot do (images, documents, tools) is refused by name.

/** `cache_control` is accepted and ignored: vLLM caches every prompt's prefix on its own. */
const cacheControl = optional(z.unknown())

const textBlock = z.strictObject({
  type: z.literal('text'),
  text: z.string(),
  cache_control: cacheControl,
  citations: optional(z.array(z.unknown())),
})
/** An earlier answer's thinking, sent back: accepted and dropped (the prompt rules drop earlier reasoning). */
const thinkingBlock = z.strictObject({ type: z.literal('thinking'), thinking: z.string(), signature: optional(z.string()) })
const redactedThinkingBlock = z.strictObject({ type: z.literal('redacted_thinking'), data: z.string() })
const block = z.discriminatedUnion('type', [textBlock, thinkingBlock, redactedThinkingBlock])

const message = z.strictObject({
  role: z.enum(['user', 'assistant'], { error: "A message's role must be 'user' or 'assistant' (the system prompt is `system`)." }),
  content: z.union([z.string(), z.array(block)]),
})

const messages = z.array(message).check(z.minLength(1, 'messages must contain at least one message.'))
const system = optional(z.union([z.string(), z.array(textBlock)]))
const model = nonEmptyString('model must be a non-empty string.')

/**
 * Whether the answer shows the reasoning (`summarized`: as it is, there being no summarizer) or
 * only a thinking block's signature (`omitted`).
 */
const display = optional(z.enum(['summarized', 'omitted']))

const thinking = z.discriminatedUnion(
  'type',
  [
    z.strictObject({
      type: z.literal('enabled'),
      budget_tokens: intWhere('budget_tokens', (value) => value >= 1024, 'must be at least 1024'),
      display,
    }),
    // The model decides how much to think: DeepSeek-R1 always does, so it is `enabled` without a budget.
    z.strictObject({ type: z.literal('adaptive'), display }),
    z.strictObject({ type: z.literal('disabled') }),
  ],
  { error: "thinking.type must be 'enabled', 'adaptive' or 'disabled'." },
)

export type ThinkingDisplay = 'shown' | 'omitted' | 'hidden'

/** What the answer shows of the reasoning: only what the request asked for (none unless thinking is on). */
export function thinkingDisplay(request: Pick<MessagesRequest, 'thinking'>): ThinkingDisplay {
  const asked = request.thinking
  if (!asked || asked.type === 'disabled') return 'hidden'
  return asked.display === 'omitted' ? 'omitted' : 'shown'
}

export const messagesRequestSchema = z
  .strictObject({
    model,
    messages,
    max_tokens: intWhere('max_tokens', (value) => value >= 1, 'must be at least 1'),
    system,
    // The chat schema's limit (OpenAI's four), which Anthropic does not have.
    stop_sequences: optional(
      z
        .array(nonEmptyString('stop_sequences cannot contain an empty string.'))
        .check(z.maxLength(4, 'stop_sequences takes at most 4 sequences on this gateway.')),
    ),
    // Anthropic's ranges (vLLM's temperature goes to 2).
    temperature: optional(numberWhere('temperature', (value) => value >= 0 && value <= 1, 'must be in [0, 1]')),
    top_p: optional(numberWhere('top_p', (value) => value > 0 && value <= 1, 'must be in (0, 1]')),
    top_k: optional(intWhere('top_k', (value) => value >= 0, 'must be 0 (disable) or more')),
    stream: optional(z.boolean()),
    // Accepted, never sent upstream.
    metadata: optional(z.strictObject({ user_id: optional(z.string()) })),
    thinking: optional(thinking),
    // Refused when they ask for a tool (MESSAGES_REFUSALS).
    tools: optional(z.array(z.unknown())),
    tool_choice: optional(z.unknown()),
  })
  .check(
    z.refine((request) => request.thinking?.type !== 'enabled' || request.thinking.budget_tokens < request.max_tokens, {
      message: 'thinking.budget_tokens must be less than max_tokens.',
      path: ['thinking', 'budget_tokens'],
    }),
  )

export type MessagesRequest = z.infer<typeof messagesRequestSchema>

export const countTokensRequestSchema = z.strictObject({
  model,
  messages,
  system,
  // What a counted request would send; counted as the chat path sends it (the prompt), else not read.
  thinking: optional(thinking),
  tools: optional(z.array(z.unknown())),
  tool_choice: optional(z.unknown()),
})

export type CountTokensRequest = z.infer<typeof countTokensRequestSchema>

const NO_TOOLS = 'is not available: DeepSeek-R1-Distill-Qwen-1.5B cannot call tools, and this deployment serves none.'

type Refusal = { param: string; asks: (request: CountTokensRequest) => boolean; reason: string }

/** Each field that asks for what this gateway in front of a tool-less model cannot do, with why. */
const MESSAGES_REFUSALS: readonly Refusal[] = [
  { param: 'tools', asks: (request) => (request.tools?.length ?? 0) > 0, reason: NO_TOOLS },
  {
    param: 'tool_choice',
    asks: (request) => request.tool_choice != null && !isToolChoiceNone(request.tool_choice),
    reason: NO_TOOLS,
  },
]

function isToolChoiceNone(choice: unknown): boolean {
  return typeof choice === 'object' && choice !== null && 'type' in choice && (choice.type === 'none' || choice.type === 'auto')
}

/**
 * Checks a parsed JSON body of `POST /v1/messages`; the first problem becomes a 400 naming the
 * field (Anthropic's error shape carries the message only, so the name is in it).
 */
export function parseMessagesRequest(body: unknown): MessagesRequest {
  refuseBlocks(body)
  const request = parseWith(messagesRequestSchema, body)
  refuse(request)
  return request
}

/** The same for `POST /v1/messages/count_tokens`. */
export function parseCountTokensRequest(body: unknown): CountTokensRequest {
  refuseBlocks(body)
  const request = parseWith(countTokensRequestSchema, body)
  refuse(request)
  return request
}

function refuse(request: CountTokensRequest): void {
  for (const refusal of MESSAGES_REFUSALS) {
    if (refusal.asks(request)) {
      throw new ApiError(400, `'${refusal.param}' ${refusal.reason}`, { param: refusal.param, code: 'unsupported_parameter' })
    }
  }
}

/** Why a content block of a type not taken is refused. */
const BLOCK_REASONS: Readonly<Record<string, string>> = {
  image: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B reads text only.',
  document: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B reads text only; send the text in a text block.',
  tool_use: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B cannot call tools, and this deployment serves none.',
  tool_result: 'is not available: DeepSeek-R1-Distill-Qwen-1.5B cannot call tools, and this deployment serves none.',
}

/**
 * A content block of a type not taken (or thinking in a user turn), named by its place: a clearer
 * 400 than the schema's "expected one of".
 */
function refuseBlocks(body: unknown): void {
  const list = typeof body === 'object' && body !== null && 'messages' in body ? body.messages : null
  if (!Array.isArray(list)) return
  list.forEach((turn: unknown, index) => {
    const content = typeof turn === 'object' && turn !== null && 'content' in turn ? turn.content : null
    if (!Array.isArray(content)) return
    const role = typeof turn === 'object' && turn !== null && 'role' in turn ? turn.role : null
    content.forEach((item: unknown, at) => {
      const type = typeof item === 'object' && item !== null && 'type' in item ? item.type : undefined
      const param = `messages[${index}].content[${at}]`
      if (type === undefined || type === 'text') return
      if (type === 'thinking' || type === 'redacted_thinking') {
        if (role === 'user') {
          throw new ApiError(400, `Content blocks of type ${JSON.stringify(type)} are only taken in assistant turns (${param}).`, {
            param,
            code: 'invalid_value',
          })
        }
        return
      }
      const key = String(type)
      const reason = Object.hasOwn(BLOCK_REASONS, key)
        ? BLOCK_REASONS[key]
        : 'is not available: only text blocks are (and thinking blocks in assistant turns).'
      throw new ApiError(400, `Content blocks of type ${JSON.stringify(type)} ${reason} (${param})`, {
        param,
        code: 'unsupported_parameter',
      })
    })
  })
}

type ChatMessageBody = { role: 'system' | 'user' | 'assistant'; content: string | { type: 'text'; text: string }[] }

/**
 * The chat messages that ask for the same prompt: the system prompt first (text blocks
 * concatenated, as vLLM's own Messages endpoint joins them), so the prompt rules fold it into the
 * first user turn as they fold any system prompt; then each turn's text blocks. Thinking blocks
 * are left out, as the prompt rules leave out earlier reasoning.
 */
export function toChatMessages(request: CountTokensRequest): ChatMessageBody[] {
  const out: ChatMessageBody[] = []
  if (request.system != null) {
    const text = typeof request.system === 'string' ? request.system : request.system.map((part) => part.text).join('')
    if (text !== '') out.push({ role: 'system', content: text })
  }
  for (const turn of request.messages) {
    if (typeof turn.content === 'string') {
      out.push({ role: turn.role, content: turn.content })
      continue
    }
    const texts = turn.content.flatMap((part) => (part.type === 'text' ? [{ type: 'text' as const, text: part.text }] : []))
    const [only, ...more] = texts
    out.push({ role: turn.role, content: only && more.length === 0 ? only.text : texts.length === 0 ? '' : texts })
  }
  return out
}

/** The chat completions body that asks for the same generation. */
export function toChatBody(request: MessagesRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { model: request.model, messages: toChatMessages(request), max_tokens: request.max_tokens }
  if (request.stream != null) body.stream = request.stream
  if (request.temperature != null) body.temperature = request.temperature
  if (request.top_p != null) body.top_p = request.top_p
  if (request.top_k != null) body.top_k = request.top_k
  if (request.stop_sequences != null && request.stop_sequences.length > 0) body.stop = request.stop_sequences
  return body
}

/** Chat field names in a refusal of the translated body, as the Messages request names them. */
const PARAM_NAMES: ReadonlyArray<[RegExp, string]> = [[/^stop/, 'stop_sequences']]

/**
 * A refusal of the translated chat body, naming the Messages field the client sent. Most chat
 * names are the Messages API's own (model, messages, max_tokens, temperature, top_p, top_k); the
 * context refusals (the gateway's and vLLM's) speak of `max_tokens` and the messages, which read
 * right here too.
 */
export function asMessagesError<T>(error: T): T | ApiError {
  if (!(error instanceof ApiError) || error.param === null) return error
  const renamed = PARAM_NAMES.find(([pattern]) => pattern.test(error.param as string))
  if (!renamed) return error
  const name = error.param.replace(renamed[0], renamed[1])
  const message = error.message.replaceAll(error.param, name)
  return new ApiError(error.status, message, { type: error.type, code: error.code, param: name, headers: error.headers })
}
