// vLLM v0.11.0's parameters reach the backend as the client sent them; what cannot work here is a
// 400 naming the field, before any backend is called.
import { describe, expect, it } from 'vitest'
import { TEST_KEY_ID } from '../support/keys.ts'
import { keyWithLimits } from '../support/limits.ts'
import { chatBody, emulatorStats, postChat, recordedRequests } from '../support/worker.ts'

const SHORT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

let serial = 0
const marker = () => `par-${Date.now().toString(36)}-${serial++}`

async function sentWith(mark: string): Promise<Record<string, unknown>[]> {
  const entries = await recordedRequests()
  return entries.filter((entry) => JSON.stringify(entry.body).includes(mark)).map((entry) => entry.body ?? {})
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

const PARAMETERS = {
  response_format: {
    type: 'json_schema',
    json_schema: { name: 'answer', schema: { type: 'object', properties: { x: { type: 'integer' } } }, strict: true },
  },
  top_k: 20,
  min_p: 0.05,
  repetition_penalty: 1.05,
  logit_bias: { '151643': -100 },
  min_tokens: 1,
  max_tokens: 64,
  stop_token_ids: [151643],
  include_stop_str_in_output: true,
  skip_special_tokens: false,
  spaces_between_special_tokens: false,
  ignore_eos: false,
  seed: 1234,
  n: 2,
  presence_penalty: 0.5,
  frequency_penalty: -0.5,
  logprobs: true,
  top_logprobs: 2,
  user: 'user-7',
  bad_words: ['never'],
  priority: 0,
}

describe('parameters on the way to the backend', () => {
  it("reach the backend as sent, next to the gateway's own stream settings", async () => {
    const mark = marker()
    const response = await postChat(chatBody(`${SHORT} ${mark}`, { stream: true, ...PARAMETERS }))
    expect(response.status).toBe(200)
    await response.text()
    const [sent] = await sentWith(mark)
    expect(sent).toMatchObject(PARAMETERS)
    expect(sent).toMatchObject({ stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } })
  })

  it("salt the prefix cache per key: the key id, then the client's own salt", async () => {
    const own = marker()
    await (await postChat(chatBody(`${SHORT} ${own}`, { cache_salt: 'tenant-a-salt' }))).text()
    expect((await sentWith(own))[0]).toMatchObject({ cache_salt: `${TEST_KEY_ID}:tenant-a-salt` })
    const other = await keyWithLimits({})
    const none = marker()
    await (await postChat(chatBody(`${SHORT} ${none}`), { secret: other.secret })).text()
    expect((await sentWith(none))[0]).toMatchObject({ cache_salt: other.id })
  })

  it('forward structured_outputs, the v0.11.0 name for guided decoding', async () => {
    const mark = marker()
    const structured = { choice: ['yes', 'no'] }
    await (await postChat(chatBody(`${SHORT} ${mark}`, { structured_outputs: structured }))).text()
    expect((await sentWith(mark))[0]).toMatchObject({ structured_outputs: structured })
  })

  it('forward tools with tool_choice "none", which vLLM accepts without a tool parser', async () => {
    const mark = marker()
    const tools = [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }]
    const response = await postChat(chatBody(`${SHORT} ${mark}`, { tools, tool_choice: 'none' }))
    expect(response.status).toBe(200)
    expect((await sentWith(mark))[0]).toMatchObject({ tools, tool_choice: 'none' })
  })
})

describe('parameters refused before any backend is called', () => {
  it.each([
    ['an unknown field', { frobnicate: true }, 'frobnicate', 'Unrecognized request argument supplied: frobnicate'],
    [
      'tools with automatic tool choice',
      { tools: [{ type: 'function', function: { name: 'f' } }] },
      'tool_choice',
      '--enable-auto-tool-choice',
    ],
    ['top_p 0', { top_p: 0 }, 'top_p', 'top_p must be in (0, 1], got 0.'],
    ['top_logprobs without logprobs', { top_logprobs: 2 }, 'top_logprobs', 'when using `top_logprobs`, `logprobs` must be set to true.'],
    ['a deprecated guided_* field', { guided_regex: 'a+' }, 'guided_regex', 'structured_outputs'],
  ])('%s: 400 naming the field', async (_, extra, param, message) => {
    const before = (await emulatorStats()).requests
    const response = await postChat(chatBody('Hi', extra))
    expect(response.status).toBe(400)
    const body = (await response.json()) as ErrorBody
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param })
    expect(body.error.message).toContain(message)
    expect((await emulatorStats()).requests).toBe(before)
  })
})
