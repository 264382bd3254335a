import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import { asResponsesError, parseResponsesRequest, toChatBody } from '../../src/responses/request.ts'
import { ReasoningTokens } from '../../src/responses/output.ts'
import { ChunkReader } from '../../src/relay/chunk.ts'
import type { DataChunk } from '../../src/relay/generation.ts'

// The pure parts of the Responses API: the translation to a chat body, refusal names, and the
// reasoning token count read from vLLM's running usage.

describe('toChatBody', () => {
  it('puts instructions first as a system message and maps roles, parts and settings', () => {
    const request = parseResponsesRequest({
      model: 'm',
      instructions: 'Be brief.',
      input: [
        { role: 'developer', content: 'Plain words.' },
        {
          role: 'user',
          content: [
            { type: 'input_text', text: 'a' },
            { type: 'input_text', text: 'b' },
          ],
        },
        { type: 'reasoning', id: 'rs_1', summary: [] },
        { role: 'assistant', content: [{ type: 'output_text', text: 'c', annotations: [] }] },
      ],
      max_output_tokens: 9,
      temperature: 0.6,
      top_p: 0.9,
      stream: true,
      user: 'u',
      text: { format: { type: 'json_object' } },
      metadata: { a: 'b' },
    })
    expect(toChatBody(request)).toEqual({
      model: 'm',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'system', content: 'Plain words.' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a' },
            { type: 'text', text: 'b' },
          ],
        },
        { role: 'assistant', content: [{ type: 'text', text: 'c' }] },
      ],
      max_tokens: 9,
      temperature: 0.6,
      top_p: 0.9,
      stream: true,
      user: 'u',
      response_format: { type: 'json_object' },
    })
  })

  it('sends a string input as one user message and text.format text as no response_format', () => {
    expect(toChatBody(parseResponsesRequest({ input: 'Hi', text: { format: { type: 'text' } } }))).toEqual({
      messages: [{ role: 'user', content: 'Hi' }],
    })
  })
})

describe('asResponsesError', () => {
  it('renames chat params to the Responses fields they came from, in param and message', () => {
    const renamed = asResponsesError(
      new ApiError(400, "Invalid value for 'max_tokens': too big", { param: 'max_tokens', code: 'invalid_value' }),
    )
    expect(renamed).toMatchObject({
      param: 'max_output_tokens',
      message: "Invalid value for 'max_output_tokens': too big",
      code: 'invalid_value',
    })
    const untouched = new ApiError(400, 'x', { param: 'seed' })
    expect(asResponsesError(untouched)).toBe(untouched)
  })
})

describe('ReasoningTokens', () => {
  const reader = new ChunkReader()
  const chunk = (delta: Record<string, string>, completionTokens: number) =>
    reader.read(
      JSON.stringify({
        id: 'c',
        object: 'chat.completion.chunk',
        created: 1,
        model: 'm',
        choices: [{ index: 0, delta }],
        usage: { prompt_tokens: 5, completion_tokens: completionTokens, total_tokens: 5 + completionTokens },
      }),
    ) as DataChunk

  it('counts the completion tokens at the last reasoning chunk, one less when that chunk starts the answer', () => {
    const tokens = new ReasoningTokens()
    tokens.read(chunk({ reasoning_content: 'a' }, 1))
    tokens.read(chunk({ reasoning_content: 'b' }, 2))
    tokens.read(chunk({ content: 'c' }, 4))
    expect(tokens.responseUsage()).toEqual({
      input_tokens: 5,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 4,
      output_tokens_details: { reasoning_tokens: 2 },
      total_tokens: 9,
    })
    const mixed = new ReasoningTokens()
    mixed.read(chunk({ reasoning_content: 'a', content: 'b' }, 3))
    expect(mixed.count).toBe(2)
  })
})
