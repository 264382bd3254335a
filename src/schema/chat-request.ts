import * as z from 'zod/mini'
import { parseWith } from './parse.ts'

// The OpenAI chat request as this gateway accepts it. Fields not named here are dropped, so only
// known fields ever reach a backend. zod/mini keeps the Worker bundle small.

const textPart = z.object({ type: z.literal('text'), text: z.string() })
const content = z.union([z.string(), z.array(textPart)])

const message = z.discriminatedUnion('role', [
  z.object({ role: z.literal('system'), content, name: z.optional(z.string()) }),
  z.object({ role: z.literal('user'), content, name: z.optional(z.string()) }),
  z.object({
    role: z.literal('assistant'),
    content: z.optional(z.nullable(content)),
    name: z.optional(z.string()),
    reasoning_content: z.optional(z.nullable(z.string())),
  }),
])

const optional = <T extends z.core.SomeType>(schema: T) => z.optional(z.nullable(schema))
const between = (min: number, max: number) => z.number().check(z.gte(min), z.lte(max))
const positiveInt = z.int().check(z.gte(1))

export const chatRequestSchema = z
  .object({
    model: optional(z.string()),
    messages: z.array(message).check(z.minLength(1, 'messages must contain at least one message.')),
    stream: optional(z.boolean()),
    stream_options: optional(
      z.object({ include_usage: optional(z.boolean()), continuous_usage_stats: optional(z.boolean()) }),
    ),
    temperature: optional(between(0, 2)),
    top_p: optional(between(0, 1)),
    max_tokens: optional(positiveInt),
    max_completion_tokens: optional(positiveInt),
    stop: optional(z.union([z.string(), z.array(z.string()).check(z.maxLength(4))])),
    n: optional(z.int().check(z.gte(1), z.lte(8))),
    seed: optional(z.int()),
    presence_penalty: optional(between(-2, 2)),
    frequency_penalty: optional(between(-2, 2)),
    logprobs: optional(z.boolean()),
    top_logprobs: optional(z.int().check(z.gte(0), z.lte(20))),
    user: optional(z.string()),
  })
  .check(
    z.refine((request) => request.stream_options == null || request.stream === true, {
      message: 'stream_options can only be set when stream is true.',
      path: ['stream_options'],
    }),
  )

export type ChatRequest = z.infer<typeof chatRequestSchema>
export type ChatMessage = ChatRequest['messages'][number]

/** Checks a parsed JSON body; the first problem becomes a 400 whose `param` names the field. */
export function parseChatRequest(body: unknown): ChatRequest {
  return parseWith(chatRequestSchema, body)
}
