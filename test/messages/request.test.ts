import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/errors.ts'
import {
  asMessagesError,
  parseCountTokensRequest,
  parseMessagesRequest,
  thinkingDisplay,
  toChatBody,
  toChatMessages,
} from '../../src/messages/request.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const base = { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: 'Hi' }] }

function refusal(body: unknown, parse: (body: unknown) => unknown = parseMessagesRequest): ApiError {
  try {
    parse(body)
  } catch (error) {
    if (error instanceof ApiError) return error
    throw error
  }
  throw new Error('not refused')
}

describe('parseMessagesRequest', () => {
  it('takes what Anthropic clients send', () => {
    const request = parseMessagesRequest({
      ...base,
      max_tokens: 2000,
      system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }],
      stop_sequences: ['END'],
      temperature: 0.5,
      top_p: 0.9,
      top_k: 40,
      stream: true,
      metadata: { user_id: 'u' },
      thinking: { type: 'enabled', budget_tokens: 1024 },
      tools: [],
      tool_choice: { type: 'auto' },
    })
    expect(request.thinking).toEqual({ type: 'enabled', budget_tokens: 1024 })
    expect(parseMessagesRequest({ ...base, thinking: { type: 'disabled' } }).thinking).toEqual({ type: 'disabled' })
  })

  it.each([
    ['image', { messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }, 'messages[0].content[0]', /text only/],
    ['document', { messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] }, 'messages[0].content[0]', /text only/],
    ['tool_use', { messages: [{ role: 'assistant', content: [{ type: 'tool_use' }] }] }, 'messages[0].content[0]', /cannot call tools/],
    [
      'tool_result',
      { messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'tool_result' }] }] },
      'messages[0].content[1]',
      /cannot call tools/,
    ],
    ['search_result', { messages: [{ role: 'user', content: [{ type: 'search_result' }] }] }, 'messages[0].content[0]', /only text blocks/],
    [
      'thinking in a user turn',
      { messages: [{ role: 'user', content: [{ type: 'thinking', thinking: 'x', signature: 's' }] }] },
      'messages[0].content[0]',
      /assistant turns/,
    ],
    ['tools', { tools: [{ name: 'f' }] }, 'tools', /cannot call tools/],
    ['tool_choice any', { tool_choice: { type: 'any' } }, 'tool_choice', /cannot call tools/],
    ['tool_choice tool', { tool_choice: { type: 'tool', name: 'f' } }, 'tool_choice', /cannot call tools/],
    ['an unknown field', { service_tier: 'auto' }, 'service_tier', /Unrecognized/],
    [
      'an unknown block field',
      { messages: [{ role: 'user', content: [{ type: 'text', text: 'a', extra: 1 }] }] },
      'messages[0].content[0].extra',
      /Unrecognized/,
    ],
    ['no model', { model: undefined }, 'model', /model/],
    ['no messages', { messages: [] }, 'messages', /at least one message/],
    ['no max_tokens', { max_tokens: undefined }, 'max_tokens', /max_tokens/],
    ['a fractional max_tokens', { max_tokens: 1.5 }, 'max_tokens', /integer/],
    ['a temperature over 1', { temperature: 1.2 }, 'temperature', /\[0, 1\]/],
    ['a negative top_k', { top_k: -1 }, 'top_k', /top_k/],
    ['an empty stop sequence', { stop_sequences: [''] }, 'stop_sequences[0]', /empty/],
    ['five stop sequences', { stop_sequences: ['a', 'b', 'c', 'd', 'e'] }, 'stop_sequences', /at most 4/],
    [
      'a budget under 1024',
      { max_tokens: 5000, thinking: { type: 'enabled', budget_tokens: 1000 } },
      'thinking.budget_tokens',
      /at least 1024/,
    ],
    [
      'a budget at max_tokens',
      { max_tokens: 2000, thinking: { type: 'enabled', budget_tokens: 2000 } },
      'thinking.budget_tokens',
      /less than max_tokens/,
    ],
    ['thinking of another type', { thinking: { type: 'between_tools' } }, 'thinking.type', /'enabled', 'adaptive' or 'disabled'/],
    [
      'an unknown thinking display',
      { max_tokens: 5000, thinking: { type: 'enabled', budget_tokens: 1024, display: 'full' } },
      'thinking.display',
      /summarized/,
    ],
    ['metadata beyond user_id', { metadata: { user_id: 'u', tag: 'x' } }, 'metadata.tag', /Unrecognized/],
  ])('refuses %s with a 400 naming it', (_name, fields, param, message) => {
    const error = refusal({ ...base, ...fields })
    expect(error.status).toBe(400)
    expect(error.param).toBe(param)
    expect(error.message).toMatch(message)
  })
})

describe('thinkingDisplay', () => {
  it('shows the reasoning only when thinking is asked for; omitted: the block without its text', () => {
    const parse = (thinking: unknown) => thinkingDisplay(parseMessagesRequest({ ...base, max_tokens: 5000, thinking }))
    expect(thinkingDisplay(parseMessagesRequest(base))).toBe('hidden')
    expect(parse({ type: 'disabled' })).toBe('hidden')
    expect(parse({ type: 'enabled', budget_tokens: 1024 })).toBe('shown')
    expect(parse({ type: 'enabled', budget_tokens: 1024, display: 'summarized' })).toBe('shown')
    expect(parse({ type: 'adaptive' })).toBe('shown')
    expect(parse({ type: 'adaptive', display: 'omitted' })).toBe('omitted')
  })
})

describe('parseCountTokensRequest', () => {
  it('takes model, messages and system, without max_tokens', () => {
    expect(parseCountTokensRequest({ model: MODEL, system: 'S', messages: base.messages }).system).toBe('S')
  })

  it('refuses what the Messages API refuses', () => {
    expect(refusal({ model: MODEL, messages: [{ role: 'user', content: [{ type: 'image' }] }] }, parseCountTokensRequest).status).toBe(400)
    expect(refusal({ model: MODEL, messages: base.messages, max_tokens: 5 }, parseCountTokensRequest).param).toBe('max_tokens')
  })
})

describe('toChatBody', () => {
  it('makes the chat body: system first, thinking dropped, stop_sequences as stop, metadata and thinking not sent', () => {
    const request = parseMessagesRequest({
      model: MODEL,
      max_tokens: 3000,
      system: [
        { type: 'text', text: 'A.' },
        { type: 'text', text: ' B.' },
      ],
      messages: [
        { role: 'user', content: 'Q1' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'why', signature: 's' },
            { type: 'redacted_thinking', data: 'd' },
            { type: 'text', text: 'A1' },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Q2a' },
            { type: 'text', text: 'Q2b' },
          ],
        },
      ],
      stop_sequences: ['END'],
      temperature: 0.2,
      top_p: 0.5,
      top_k: 5,
      stream: true,
      metadata: { user_id: 'u' },
      thinking: { type: 'enabled', budget_tokens: 1024 },
    })
    expect(toChatBody(request)).toEqual({
      model: MODEL,
      max_tokens: 3000,
      messages: [
        { role: 'system', content: 'A. B.' },
        { role: 'user', content: 'Q1' },
        { role: 'assistant', content: 'A1' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Q2a' },
            { type: 'text', text: 'Q2b' },
          ],
        },
      ],
      stop: ['END'],
      temperature: 0.2,
      top_p: 0.5,
      top_k: 5,
      stream: true,
    })
  })

  it('leaves an assistant turn of thinking only with empty content', () => {
    const request = parseCountTokensRequest({
      model: MODEL,
      messages: [
        { role: 'user', content: 'Q' },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'x', signature: 's' }] },
      ],
    })
    expect(toChatMessages(request)).toEqual([
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: '' },
    ])
  })
})

describe('asMessagesError', () => {
  it("renames the chat body's stop as stop_sequences", () => {
    const error = asMessagesError(new ApiError(400, "Invalid value for 'stop[0]': bad.", { param: 'stop[0]', code: 'invalid_value' }))
    expect(error).toMatchObject({ param: 'stop_sequences[0]', message: "Invalid value for 'stop_sequences[0]': bad." })
  })

  it('keeps the names the Messages API shares with chat', () => {
    const error = new ApiError(400, "'max_tokens' is too large", { param: 'max_tokens', code: 'context_length_exceeded' })
    expect(asMessagesError(error)).toBe(error)
  })
})
