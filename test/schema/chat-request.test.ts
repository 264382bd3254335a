import { describe, expect, it } from 'vitest'
import { parseChatRequest } from '../../src/schema/chat-request.ts'

const messages = [{ role: 'user', content: 'Hi' }]
const parse = (extra: Record<string, unknown>) => parseChatRequest({ messages, ...extra })
const refusalOf = (body: Record<string, unknown>) => {
  try {
    parseChatRequest(body)
  } catch (error) {
    return error as { status: number; param: string | null; code: string | null }
  }
  throw new Error(`accepted ${JSON.stringify(body)}`)
}
const refusal = (extra: Record<string, unknown>) => {
  try {
    parse(extra)
  } catch (error) {
    return error as { status: number; message: string; param: string | null; code: string | null; type: string }
  }
  throw new Error(`accepted ${JSON.stringify(extra)}`)
}

// Each field as vLLM v0.11.0 takes it (protocol.py ChatCompletionRequest, sampling_params.py _verify_args).
const accepted: [string, unknown][] = [
  ['top_k', 40],
  ['top_k', -1],
  ['top_k', 0],
  ['min_p', 0],
  ['min_p', 1],
  ['repetition_penalty', 1.1],
  ['logit_bias', { '151935': 5, '0': -100 }],
  ['min_tokens', 0],
  ['stop_token_ids', [151643, 7]],
  ['include_stop_str_in_output', true],
  ['skip_special_tokens', false],
  ['spaces_between_special_tokens', false],
  ['ignore_eos', true],
  ['bad_words', ['foo']],
  ['seed', -1],
  ['n', 3],
  ['best_of', 1],
  ['top_p', 1],
  ['temperature', 0],
  ['temperature', 3.5],
  ['presence_penalty', -2],
  ['frequency_penalty', 2],
  ['priority', 0],
  ['cache_salt', 'tenant-salt'],
  ['user', 'u-1'],
  ['parallel_tool_calls', false],
  ['response_format', { type: 'text' }],
  ['response_format', { type: 'json_object' }],
  ['response_format', { type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object' }, strict: true, description: 'd' } }],
  [
    'response_format',
    { type: 'structural_tag', structures: [{ begin: '<a>', schema: { type: 'object' }, end: '</a>' }], triggers: ['<a>'] },
  ],
  ['structured_outputs', { regex: '[0-9]+' }],
  ['structured_outputs', { choice: ['yes', 'no'] }],
  ['structured_outputs', { json: { type: 'object' }, disable_additional_properties: true }],
]

describe('the chat request schema accepts what vLLM v0.11.0 accepts', () => {
  it.each(accepted)('forwards %s = %j as sent', (field, value) => {
    expect(parse({ [field]: value })[field as 'top_k']).toEqual(value)
  })

  it('accepts top_logprobs with logprobs, and top_logprobs 0 without', () => {
    expect(parse({ logprobs: true, top_logprobs: 5 })).toMatchObject({ logprobs: true, top_logprobs: 5 })
    expect(parse({ top_logprobs: 0 }).top_logprobs).toBe(0)
  })

  it('accepts an empty stream_options without stream, as Python truthiness does, and refuses a filled one', () => {
    expect(parse({ stream_options: {} }).stream_options).toEqual({})
    expect(refusal({ stream_options: { include_usage: true } })).toMatchObject({
      param: 'stream_options',
      message: expect.stringContaining('Stream options can only be defined when `stream=True`.'),
    })
  })

  it('accepts min_tokens up to max_tokens (max_completion_tokens first, as vLLM reads them)', () => {
    expect(parse({ min_tokens: 10, max_tokens: 10 }).min_tokens).toBe(10)
    expect(parse({ min_tokens: 10, max_tokens: 5, max_completion_tokens: 10 }).min_tokens).toBe(10)
  })

  it('accepts tools with tool_choice "none", and "required" with an empty tool list', () => {
    const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }]
    expect(parse({ tools, tool_choice: 'none' }).tools).toEqual(tools)
    expect(parse({ tools: [], tool_choice: 'required' }).tool_choice).toBe('required')
  })
})

const outOfRange: [string, unknown, RegExp][] = [
  ['top_p', 0, /top_p must be in \(0, 1\], got 0/],
  ['top_p', 1.5, /top_p must be in \(0, 1\]/],
  ['temperature', -0.1, /temperature must be non-negative/],
  ['top_k', -2, /top_k must be 0 \(disable\), or at least 1, got -2/],
  ['top_k', 1.5, /integer/],
  ['min_p', 1.01, /min_p must be in \[0, 1\]/],
  ['repetition_penalty', 0, /repetition_penalty must be greater than zero/],
  ['presence_penalty', 2.5, /presence_penalty must be in \[-2, 2\]/],
  ['frequency_penalty', -3, /frequency_penalty must be in \[-2, 2\]/],
  ['logit_bias', { abc: 1 }, /token ids/],
  ['logit_bias', { '151936': 1 }, /token ids in \[0, 151936\)/],
  ['logit_bias', { '5': 'high' }, /number/],
  ['min_tokens', -1, /min_tokens must be greater than or equal to 0/],
  ['stop_token_ids', [1.5], /integer/],
  ['stop', '', /stop cannot contain an empty string/],
  ['stop', ['a', ''], /stop cannot contain an empty string/],
  ['ignore_eos', null, /boolean/],
  ['n', 0, /n must be at least 1/],
  ['best_of', 2, /vLLM V1 does not yet support best_of/],
  ['top_logprobs', 21, /top_logprobs must be in \[0, 20\]/],
  ['max_tokens', 0, /max_tokens must be at least 1, got 0/],
  ['priority', 1, /priority must be 0/],
  ['cache_salt', '', /cache_salt' must be a non-empty string/],
  ['response_format', { type: 'xml' }, /response_format.type must be one of/],
  ['response_format', { type: 'json_schema' }, /./],
  ['response_format', { type: 'json_schema', json_schema: { schema: {} } }, /./],
  ['structured_outputs', { regex: 'a', choice: ['a'] }, /one kind of structured outputs constraint/],
  ['structured_outputs', { choice: [] }, /cannot be an empty list/],
]

describe('the chat request schema refuses what vLLM v0.11.0 refuses, naming the field', () => {
  it.each(outOfRange)('refuses %s = %j', (field, value, message) => {
    const error = refusal({ [field]: value })
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', code: 'invalid_value' })
    expect(error.param?.startsWith(field)).toBe(true)
    expect(error.message).toMatch(message)
  })

  it("refuses top_logprobs without logprobs with vLLM's own text", () => {
    expect(refusal({ top_logprobs: 3 })).toMatchObject({
      param: 'top_logprobs',
      message: expect.stringContaining('when using `top_logprobs`, `logprobs` must be set to true.'),
    })
  })

  it('refuses min_tokens above max_tokens', () => {
    expect(refusal({ min_tokens: 11, max_tokens: 10 })).toMatchObject({
      param: 'min_tokens',
      message: expect.stringContaining('max_tokens=10, got 11'),
    })
  })

  it('refuses best_of below n, and response_format together with structured_outputs', () => {
    expect(refusal({ n: 2, best_of: 1 }).param).toBe('best_of')
    expect(refusal({ response_format: { type: 'json_object' }, structured_outputs: { regex: 'a' } }).param).toBe('structured_outputs')
  })
})

describe('tools on a deployment without automatic tool choice', () => {
  const tools = [{ type: 'function', function: { name: 'get_weather' } }]

  it.each([
    ['tools without tool_choice (vLLM defaults it to "auto")', { tools }],
    ['tool_choice "auto"', { tools, tool_choice: 'auto' }],
  ])('refuses %s with a 400 naming tool_choice', (_, extra) => {
    const error = refusal(extra)
    expect(error).toMatchObject({ status: 400, param: 'tool_choice' })
    expect(error.message).toMatch(/--enable-auto-tool-choice/)
  })

  it.each([
    ['"required"', 'required'],
    ['a named function', { type: 'function', function: { name: 'get_weather' } }],
  ])('refuses tool_choice %s, saying why', (_, toolChoice) => {
    const error = refusal({ tools, tool_choice: toolChoice })
    expect(error).toMatchObject({ status: 400, param: 'tool_choice' })
    expect(error.message).toMatch(/not available on this deployment/)
  })
})

describe('fields the gateway does not take', () => {
  it("answers an unknown field as OpenAI does: 400 'Unrecognized request argument supplied'", () => {
    expect(refusal({ foo: 1 })).toMatchObject({
      status: 400,
      type: 'invalid_request_error',
      message: 'Unrecognized request argument supplied: foo',
      param: 'foo',
      code: 'unknown_parameter',
    })
  })

  it('names an unknown field inside a nested object by its path', () => {
    expect(refusal({ response_format: { type: 'json_object', strict: true } })).toMatchObject({
      message: 'Unrecognized request argument supplied: response_format.strict',
      param: 'response_format.strict',
    })
    expect(refusal({ stream: true, stream_options: { include_usage: true, extra: 1 } }).param).toBe('stream_options.extra')
  })

  it.each([
    [[{ role: 'user', content: 'Hi', cache_control: { type: 'ephemeral' } }], 'messages[0].cache_control'],
    [
      [{ role: 'user', content: [{ type: 'text', text: 'Hi', cache_control: { type: 'ephemeral' } }] }],
      'messages[0].content[0].cache_control',
    ],
    [[{ role: 'system', content: 'Be brief.', extra: 1 }, ...messages], 'messages[0].extra'],
    [[{ role: 'developer', content: 'Be brief.', extra: 1 }, ...messages], 'messages[0].extra'],
    [[...messages, { role: 'assistant', content: 'Hello', refusal: null }], 'messages[1].refusal'],
  ])('refuses an unknown field inside a message or content part by its path, never dropping it (%#)', (sent, param) => {
    expect(() => parseChatRequest({ messages: sent })).toThrow(`Unrecognized request argument supplied: ${param}`)
    expect(refusalOf({ messages: sent })).toMatchObject({ status: 400, param, code: 'unknown_parameter' })
  })

  it.each([
    ['guided_json', { type: 'object' }, /deprecated in vLLM v0.11.0/],
    ['continue_final_message', true, /set by the gateway/],
    ['chat_template', '{{ x }}', /chat template is fixed/],
    ['request_id', 'abc', /own request id/],
    ['logits_processors', ['x'], /logits processors/],
    ['prompt_logprobs', 1, /cannot be streamed/],
  ])("refuses vLLM's %s with the reason it cannot work here", (field, value, reason) => {
    const error = refusal({ [field]: value })
    expect(error).toMatchObject({ status: 400, param: field, code: 'unsupported_parameter' })
    expect(error.message).toMatch(reason)
  })

  it('refuses a prototype key as an unknown field, without polluting anything', () => {
    const error = refusal(JSON.parse('{"__proto__": {"polluted": 1}}') as Record<string, unknown>)
    expect(error.param).toBe('__proto__')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
  })
})

describe('the developer role', () => {
  it('accepts a developer message as a system message, so it never reaches vLLM as developer', () => {
    const parsed = parseChatRequest({ messages: [{ role: 'developer', content: 'Be brief.', name: 'ops' }, ...messages] })
    expect(parsed.messages).toEqual([{ role: 'system', content: 'Be brief.', name: 'ops' }, ...messages])
  })

  it('still refuses a role vLLM does not relay here, naming developer among the accepted ones', () => {
    expect(refusalOf({ messages: [{ role: 'tool', content: 'x' }] })).toMatchObject({ status: 400, param: 'messages[0].role' })
  })
})
