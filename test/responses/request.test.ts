import { env } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import { asResponsesError, parseResponsesRequest, toChatBody, type ResponsesRequest } from '../../src/responses/request.ts'
import { openTurn } from '../../src/responses/store.ts'
import { ReasoningTokens } from '../../src/responses/output.ts'
import { ChunkReader } from '../../src/relay/chunk.ts'
import type { DataChunk } from '../../src/relay/generation.ts'

// The pure parts of the Responses API: the translation to a chat body, refusal names, and the
// reasoning token count read from vLLM's running usage.

/** The chat body of a request that continues nothing (its context is its own input). */
async function chatBodyOf(request: ResponsesRequest): Promise<Record<string, unknown>> {
  const turn = await openTurn(env, 'key', request, 0)
  return toChatBody(request, turn.context)
}

describe('toChatBody', () => {
  it('puts instructions first as a system message and maps roles, parts and settings', async () => {
    const request = parseResponsesRequest(
      {
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
      },
      true,
    )
    expect(await chatBodyOf(request)).toEqual({
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
        { role: 'assistant', content: 'c' },
      ],
      max_tokens: 9,
      temperature: 0.6,
      top_p: 0.9,
      stream: true,
      user: 'u',
      response_format: { type: 'json_object' },
    })
  })

  it('sends a string input as one user message and text.format text as no response_format', async () => {
    expect(await chatBodyOf(parseResponsesRequest({ input: 'Hi', text: { format: { type: 'text' } } }, true))).toEqual({
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

describe('unknown fields inside input items', () => {
  const refusalOf = (input: unknown) => {
    try {
      parseResponsesRequest({ input }, true)
    } catch (error) {
      return error as ApiError
    }
    throw new Error(`accepted ${JSON.stringify(input)}`)
  }

  it.each([
    [[{ role: 'user', content: 'Hi', cache_control: { type: 'ephemeral' } }], 'input[0].cache_control'],
    [
      [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi', cache_control: {} }] }],
      'input[0].content[0].cache_control',
    ],
    [
      [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: [{ type: 'output_text', text: 'a', extra: 1 }] },
      ],
      'input[1].content[0].extra',
    ],
  ])('refuses an unknown field inside an input item or content part with a 400 naming its path (%#)', (input, param) => {
    expect(refusalOf(input)).toMatchObject({ status: 400, param, code: 'unknown_parameter' })
  })
})

describe('asResponsesError on context refusals', () => {
  // vLLM v0.11.0's texts (serving_engine.py _validate_input, chat appends " None"), relayed with param "messages".
  const relayed = (message: string) => new ApiError(400, message, { param: 'messages', code: 'context_length_exceeded' })

  it("names input for vLLM's prompt-too-long refusal, keeping its numbers", () => {
    const error = asResponsesError(
      relayed(
        "This model's maximum context length is 4096 tokens. However, your request has 5123 input tokens. Please reduce the length of the input messages. None",
      ),
    )
    expect(error).toMatchObject({
      param: 'input',
      code: 'context_length_exceeded',
      message:
        "This model's maximum context length is 4096 tokens. However, your request has 5123 input tokens. Please reduce the length of the input. None",
    })
  })

  it("names max_output_tokens for vLLM's too-large refusal, not messages or max_tokens", () => {
    const error = asResponsesError(
      relayed(
        "'max_tokens' or 'max_completion_tokens' is too large: 3000. This model's maximum context length is 4096 tokens and your request has 1601 input tokens (3000 > 4096 - 1601). None",
      ),
    )
    expect(error).toMatchObject({
      param: 'max_output_tokens',
      message:
        "'max_output_tokens' is too large: 3000. This model's maximum context length is 4096 tokens and your request has 1601 input tokens (3000 > 4096 - 1601). None",
    })
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
