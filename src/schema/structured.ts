import * as z from 'zod/mini'
import { optional } from './fields.ts'

// Structured output and tools, as vLLM v0.11.0 reads them (`vllm/entrypoints/openai/protocol.py`:
// ResponseFormat, JsonSchemaResponseFormat, StructuralTagResponseFormat, ChatCompletionToolsParam;
// `vllm/sampling_params.py`: StructuredOutputsParams). With the deepseek_r1 reasoning parser the
// constraint applies to the answer after `</think>`, not to the reasoning.

const jsonObject = z.record(z.string(), z.unknown())

const jsonSchemaFormat = z.strictObject({
  name: z.string(),
  description: optional(z.string()),
  schema: optional(jsonObject),
  strict: optional(z.boolean()),
})

const structuralTag = z.strictObject({ begin: z.string(), schema: optional(jsonObject), end: z.string() })

export const responseFormatSchema = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('text') }),
    z.strictObject({ type: z.literal('json_object') }),
    // vLLM asserts json_schema is present (an AssertionError, which it does not turn into a 400).
    z.strictObject({ type: z.literal('json_schema'), json_schema: jsonSchemaFormat }),
    z.strictObject({ type: z.literal('structural_tag'), structures: z.array(structuralTag), triggers: z.array(z.string()) }),
  ],
  { error: "response_format.type must be one of 'text', 'json_object', 'json_schema' or 'structural_tag'." },
)

const CONSTRAINTS = ['json', 'regex', 'choice', 'grammar', 'json_object'] as const

/** vLLM v0.11.0's own structured-output parameter (the guided_* fields are its deprecated aliases). */
export const structuredOutputsSchema = z
  .strictObject({
    json: optional(z.union([z.string(), jsonObject])),
    regex: optional(z.string()),
    choice: optional(z.array(z.string()).check(z.minLength(1, 'structured_outputs.choice cannot be an empty list.'))),
    grammar: optional(z.string()),
    json_object: optional(z.boolean()),
    disable_fallback: optional(z.boolean()),
    disable_any_whitespace: optional(z.boolean()),
    disable_additional_properties: optional(z.boolean()),
    whitespace_pattern: optional(z.string()),
    structural_tag: optional(z.string()),
  })
  .check(
    z.refine((value) => CONSTRAINTS.filter((key) => value[key] != null).length <= 1, {
      message: 'You can only use one kind of structured outputs constraint (json, regex, choice, grammar or json_object).',
    }),
  )

// Tools are forwarded as sent (loose objects): they only ever go out with tool_choice "none".
const toolSchema = z.looseObject({
  type: optional(z.literal('function')),
  function: z.looseObject({ name: z.string(), description: optional(z.string()), parameters: optional(jsonObject) }),
})
export const toolsSchema = z.array(toolSchema)

export const toolChoiceSchema = z.union([
  z.literal('none'),
  z.literal('auto'),
  z.literal('required'),
  z.looseObject({ type: optional(z.literal('function')), function: z.looseObject({ name: z.string() }) }),
])

type ToolChoice = z.infer<typeof toolChoiceSchema>

/**
 * Why the request's tool use cannot work on this deployment, or null when it can (no tools, or
 * tool_choice "none"). vLLM defaults tool_choice to "auto" when tools are given
 * (`protocol.py`, check_tool_usage) and refuses "auto" without --enable-auto-tool-choice
 * (`serving_chat.py`, create_chat_completion), which the backends do not set. "required" and a
 * named function would be served as JSON constrained to the tool schemas, but the model's own
 * chat template never shows it the tool definitions (vLLM ships a separate tool template for
 * R1), and the gateway carries no tool messages or tool_calls: refused too.
 */
export function toolChoiceProblem(tools: readonly unknown[] | null | undefined, choice: ToolChoice | null | undefined): string | null {
  const effective = choice ?? (tools && tools.length > 0 ? 'auto' : 'none')
  if (effective === 'none') return null
  // vLLM treats "required" with an empty tool list as "none", as OpenAI does.
  if (effective === 'required' && tools?.length === 0) return null
  if (effective === 'auto') {
    return 'Automatic tool choice is not available on this deployment: the backends run without --enable-auto-tool-choice and --tool-call-parser. Send tool_choice "none" (or no tools).'
  }
  return 'tool_choice "required" and named functions are not available on this deployment: the model\'s chat template does not show it tool definitions and the gateway relays no tool calls. Send tool_choice "none" (or no tools).'
}
