import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { MODEL, callWorker, emulatorUrl, fetchWithEnv, recordedRequests } from '../support/worker.ts'
import { TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'
import { keyWithLimits } from '../support/limits.ts'
import { backendRecord, callIn, fleetEnv, prepareFleet } from '../support/fleet.ts'
import { readAll } from '../support/sse.ts'
import { adminAuth, flushLatency } from '../support/telemetry.ts'

// POST /v1/messages and /v1/messages/count_tokens in workerd against the emulator: the
// translation onto the chat path, the message object, Anthropic's event sequence, x-api-key, and
// Anthropic's error shape on every refusal path.

interface Block {
  type: string
  text?: string
  thinking?: string
  signature?: string
}

interface MessageBody {
  id: string
  type: string
  role: string
  model: string
  content: Block[]
  stop_reason: string | null
  stop_sequence: string | null
  usage: { input_tokens: number; output_tokens: number }
}

interface Event {
  type: string
  index?: number
  message?: MessageBody
  content_block?: Block
  delta?: { type?: string; text?: string; thinking?: string; signature?: string; stop_reason?: string; stop_sequence?: string | null }
  usage?: { input_tokens?: number; output_tokens: number }
  error?: { type: string; message: string }
}

function postMessages(body: unknown, headers: Record<string, string> = { 'x-api-key': TEST_SECRET }, path = '/v1/messages') {
  return callWorker(path, {
    method: 'POST',
    // callWorker adds the test key as a Bearer token unless told otherwise: an empty one is dropped.
    headers: { 'content-type': 'application/json', authorization: '', ...headers },
    body: JSON.stringify(body),
  })
}

const ask = (text: string, extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  max_tokens: 2048,
  messages: [{ role: 'user', content: text }],
  ...extra,
})

/** Anthropic's SSE events: each frame names its type twice (event: and data). */
function messageEvents(text: string): Event[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('event: '))
    .map((frame) => {
      const [eventLine = '', dataLine = ''] = frame.split('\n')
      const event = JSON.parse(dataLine.slice('data: '.length)) as Event
      expect(eventLine).toBe(`event: ${event.type}`)
      return event
    })
}

/** The event sequence in short: type, and the block or delta type where there is one. */
function shape(events: readonly Event[]): string[] {
  const out: string[] = []
  for (const event of events) {
    const detail = event.content_block?.type ?? event.delta?.type ?? ''
    const name = detail ? `${event.type}:${detail}` : event.type
    // Runs of the same delta are one entry.
    if (out.at(-1) !== name || !name.startsWith('content_block_delta')) out.push(name)
  }
  return out
}

async function lastUpstream(): Promise<Record<string, unknown>> {
  const requests = await recordedRequests()
  return requests.filter((request) => request.path === '/v1/chat/completions').at(-1)?.body ?? {}
}

async function anthropicError(response: Response, status: number, type: string): Promise<string> {
  expect(response.status).toBe(status)
  const body = (await response.json()) as { type: string; error: { type: string; message: string }; request_id?: string }
  expect(body.type).toBe('error')
  expect(body.error.type).toBe(type)
  expect(body.request_id).toBe(response.headers.get('x-request-id'))
  return body.error.message
}

describe('POST /v1/messages, stream: false', () => {
  it('answers a message with only the text block when thinking was not asked for', async () => {
    const response = await postMessages(ask('What is 7 * 6?'), { 'x-api-key': TEST_SECRET, 'anthropic-version': '2023-06-01' })
    expect(response.status).toBe(200)
    const body = (await response.json()) as MessageBody
    expect(body.id).toMatch(/^msg_[0-9a-f]{24}$/)
    expect(body).toMatchObject({ type: 'message', role: 'assistant', model: MODEL, stop_reason: 'end_turn', stop_sequence: null })
    expect(body.content.map((block) => block.type)).toEqual(['text'])
    expect(body.content[0]?.text).toMatch(/\S/)
    expect(body.usage.input_tokens).toBeGreaterThan(0)
    expect(body.usage.output_tokens).toBeGreaterThan(0)
    // The chat body the backend got: max_tokens, the messages, the usage the gateway always asks for.
    const upstream = await lastUpstream()
    expect(upstream.max_tokens).toBe(2048)
    expect(upstream.stream).toBe(true)
  })

  it('shows the reasoning as a thinking block first when thinking is enabled', async () => {
    const request = ask('[emulator reasoning_tokens=5 content_tokens=4] Hi', { thinking: { type: 'enabled', budget_tokens: 1024 } })
    const body = (await (await postMessages(request)).json()) as MessageBody
    expect(body.content.map((block) => block.type)).toEqual(['thinking', 'text'])
    expect(body.content[0]?.thinking).toMatch(/\S/)
    expect(body.content[0]?.signature).toMatch(/^[0-9a-f]{32}$/)
    expect(body.content[1]?.text).toMatch(/\S/)
  })

  it('takes Authorization: Bearer as well as x-api-key', async () => {
    const response = await postMessages(ask('Hi'), { authorization: `Bearer ${TEST_SECRET}` })
    expect(response.status).toBe(200)
  })

  it('ends with stop_reason max_tokens when cut by length, an empty text block when cut inside the reasoning', async () => {
    const body = (await (
      await postMessages(ask('[emulator reasoning_tokens=20] Tell a long story.', { max_tokens: 3 }))
    ).json()) as MessageBody
    expect(body.stop_reason).toBe('max_tokens')
    expect(body.usage.output_tokens).toBe(3)
    expect(body.content).toEqual([{ type: 'text', text: '' }])
  })

  it('ends with stop_reason stop_sequence and the matched string', async () => {
    const first = (await (await postMessages(ask('[emulator reasoning_tokens=4 content_tokens=12] Stop me.'))).json()) as MessageBody
    const text = first.content[0]?.text ?? ''
    const word = text.trim().split(/\s+/)[3] ?? ''
    expect(word).not.toBe('')
    const body = (await (
      await postMessages(ask('[emulator reasoning_tokens=4 content_tokens=12] Stop me.', { stop_sequences: [word] }))
    ).json()) as MessageBody
    expect(body.stop_reason).toBe('stop_sequence')
    expect(body.stop_sequence).toBe(word)
    expect((await lastUpstream()).stop).toEqual([word])
  })

  it('sends the system prompt and drops thinking blocks sent back', async () => {
    const request = {
      model: MODEL,
      max_tokens: 100,
      system: [
        { type: 'text', text: 'Be brief.' },
        { type: 'text', text: ' Answer in English.', cache_control: { type: 'ephemeral' } },
      ],
      metadata: { user_id: 'u-1' },
      messages: [
        { role: 'user', content: 'Hi' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'The user greets.', signature: 'abc' },
            { type: 'redacted_thinking', data: 'xyz' },
            { type: 'text', text: 'Hello!' },
          ],
        },
        { role: 'user', content: [{ type: 'text', text: 'How are you?' }] },
      ],
    }
    expect((await postMessages(request)).status).toBe(200)
    const upstream = JSON.stringify(await lastUpstream())
    expect(upstream).toContain('Be brief. Answer in English.')
    expect(upstream).toContain('Hello!')
    expect(upstream).not.toContain('The user greets.')
    expect(upstream).not.toContain('xyz')
    expect(upstream).not.toContain('u-1')
  })
})

describe('POST /v1/messages, stream: true', () => {
  it("sends Anthropic's event sequence: message_start, ping, thinking with its signature, text, message_delta, message_stop", async () => {
    const request = ask('[emulator reasoning_tokens=4 content_tokens=4] Hi', {
      stream: true,
      thinking: { type: 'enabled', budget_tokens: 1024 },
    })
    const response = await postMessages(request)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/)
    const events = messageEvents(await response.text())
    expect(shape(events)).toEqual([
      'message_start',
      'ping',
      'content_block_start:thinking',
      'content_block_delta:thinking_delta',
      'content_block_delta:signature_delta',
      'content_block_stop',
      'content_block_start:text',
      'content_block_delta:text_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    const start = events[0]?.message as MessageBody
    expect(start).toMatchObject({ type: 'message', role: 'assistant', content: [], stop_reason: null, model: MODEL })
    expect(start.usage.input_tokens).toBeGreaterThan(0)
    expect(events.filter((event) => event.type === 'content_block_start').map((event) => event.index)).toEqual([0, 1])
    const delta = events.find((event) => event.type === 'message_delta')
    expect(delta?.delta).toEqual({ stop_reason: 'end_turn', stop_sequence: null })
    expect(delta?.usage?.output_tokens).toBeGreaterThanOrEqual(8)
  })

  it('shows no thinking block when thinking was not asked for', async () => {
    const events = messageEvents(
      await (await postMessages(ask('[emulator reasoning_tokens=4 content_tokens=4] Hi', { stream: true }))).text(),
    )
    expect(shape(events)).toEqual([
      'message_start',
      'ping',
      'content_block_start:text',
      'content_block_delta:text_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    const text = events.flatMap((event) => (event.delta?.type === 'text_delta' ? [event.delta.text] : [])).join('')
    expect(text).toMatch(/\S/)
  })

  it('ends with max_tokens when cut by length', async () => {
    const events = messageEvents(await (await postMessages(ask('Tell a long story.', { stream: true, max_tokens: 3 }))).text())
    expect(events.find((event) => event.type === 'message_delta')?.delta?.stop_reason).toBe('max_tokens')
    expect(events.at(-1)?.type).toBe('message_stop')
  })

  it("ends a stream that failed after its first token with Anthropic's error event", async () => {
    const events = messageEvents(
      await (await postMessages(ask('[emulator reasoning_tokens=2 content_tokens=8 fault=die_after:5] Hi', { stream: true }))).text(),
    )
    const last = events.at(-1)
    expect(last?.type).toBe('error')
    expect(last?.error?.type).toMatch(/^(api_error|overloaded_error)$/)
    expect(events.some((event) => event.type === 'message_stop')).toBe(false)
  })
})

describe('POST /v1/messages, refusals in Anthropic error shape', () => {
  it.each([
    [
      'an image block',
      { messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://x' } }] }] },
      /image.*text only/,
    ],
    ['a document block', { messages: [{ role: 'user', content: [{ type: 'document', source: {} }] }] }, /document.*text only/],
    [
      'a tool_use block',
      { messages: [{ role: 'assistant', content: [{ type: 'tool_use', id: 't', name: 'f', input: {} }] }] },
      /tool_use.*cannot call tools/,
    ],
    [
      'a tool_result block',
      { messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't' }] }] },
      /tool_result.*cannot call tools/,
    ],
    ['tools', { tools: [{ name: 'f', input_schema: {} }] }, /'tools'.*cannot call tools/],
    ['tool_choice any', { tool_choice: { type: 'any' } }, /'tool_choice'.*cannot call tools/],
    ['an unknown field', { top_a: 1 }, /top_a/],
    ['no max_tokens', { max_tokens: undefined }, /max_tokens/],
    ['max_tokens 0', { max_tokens: 0 }, /max_tokens must be at least 1/],
    ['temperature over 1', { temperature: 1.5 }, /temperature must be in \[0, 1\]/],
    ['a budget under 1024', { thinking: { type: 'enabled', budget_tokens: 100 } }, /budget_tokens must be at least 1024/],
    [
      'a budget not under max_tokens',
      { max_tokens: 1500, thinking: { type: 'enabled', budget_tokens: 2000 } },
      /budget_tokens must be less than max_tokens/,
    ],
    ['a system role in messages', { messages: [{ role: 'system', content: 'x' }] }, /role must be 'user' or 'assistant'/],
    [
      'thinking in a user turn',
      { messages: [{ role: 'user', content: [{ type: 'thinking', thinking: 'x' }] }] },
      /only taken in assistant turns/,
    ],
    ['more than 4 stop sequences', { stop_sequences: ['a', 'b', 'c', 'd', 'e'] }, /stop_sequences takes at most 4/],
  ])('refuses %s with 400 invalid_request_error naming it', async (_name, fields, reason) => {
    const message = await anthropicError(await postMessages({ ...ask('Hi'), ...fields }), 400, 'invalid_request_error')
    expect(message).toMatch(reason)
  })

  it('refuses a max_tokens over the context with 400', async () => {
    const message = await anthropicError(await postMessages(ask('Hi', { max_tokens: 10_000_000 })), 400, 'invalid_request_error')
    expect(message).toMatch(/max_tokens/)
  })

  it('refuses an unknown model with 404 not_found_error', async () => {
    await anthropicError(await postMessages(ask('Hi', { model: 'claude-opus-4' })), 404, 'not_found_error')
  })

  it('refuses a missing key with 401 authentication_error, naming both headers', async () => {
    const message = await anthropicError(await postMessages(ask('Hi'), {}), 401, 'authentication_error')
    expect(message).toMatch(/x-api-key/)
  })

  it('refuses a wrong key in x-api-key and in Authorization with 401 authentication_error', async () => {
    await anthropicError(await postMessages(ask('Hi'), { 'x-api-key': randomSecret() }), 401, 'authentication_error')
    await anthropicError(await postMessages(ask('Hi'), { authorization: `Bearer ${randomSecret()}` }), 401, 'authentication_error')
  })

  it('refuses a key without the chat scope with 403 permission_error', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { scopes: ['admin'] })
    await anthropicError(await postMessages(ask('Hi'), { 'x-api-key': secret }), 403, 'permission_error')
  })

  it('keeps x-api-key to the Messages API: other routes still want Authorization', async () => {
    const response = await callWorker('/v1/models', { headers: { authorization: '', 'x-api-key': TEST_SECRET } })
    expect(response.status).toBe(401)
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key')
  })

  it('refuses an unknown path and a wrong method under /v1/messages with 404 and 405 in its shape', async () => {
    await anthropicError(await postMessages(ask('Hi'), undefined, '/v1/messages/batches'), 404, 'not_found_error')
    const wrong = await callWorker('/v1/messages', { method: 'GET', headers: { 'x-api-key': TEST_SECRET } })
    await anthropicError(wrong, 405, 'invalid_request_error')
  })

  it('refuses a body over the limit with 413 request_too_large', async () => {
    const response = await fetchWithEnv({ MAX_BODY_BYTES: '1000' }, '/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_SECRET },
      body: JSON.stringify(ask('x'.repeat(5000))),
    })
    await anthropicError(response, 413, 'request_too_large')
  })

  it('refuses a request over the key’s limit with 429 rate_limit_error, its headers kept', async () => {
    const { secret } = await keyWithLimits({ requestsPerMinute: 1 })
    expect((await postMessages(ask('Hi'), { 'x-api-key': secret })).status).toBe(200)
    const refused = await postMessages(ask('Hi'), { 'x-api-key': secret })
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/)
    await anthropicError(refused, 429, 'rate_limit_error')
  })

  it('refuses with 503 overloaded_error when every backend is full and there is no queue, Retry-After kept', async () => {
    await prepareFleet()
    const testEnv = fleetEnv({ BACKEND_URLS: backendRecord(0).url, BACKEND_MAX_CONCURRENCY: '1', SLOT_LEDGERS: 'off' })
    const init = (text: string, stream: boolean): RequestInit => ({
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_SECRET },
      body: JSON.stringify(ask(text, { stream })),
    })
    const held = await callIn(testEnv, '/v1/messages', init('[emulator ttft_ms=5 itl_ms=30 reasoning_tokens=10 content_tokens=5] Hi', true))
    const heldBody = readAll(held.response.body!)
    const refused = await callIn(testEnv, '/v1/messages', init('Hi', false))
    expect(refused.response.headers.get('retry-after')).toBe('1')
    await anthropicError(refused.response, 503, 'overloaded_error')
    await heldBody
    await held.settled()
    await refused.settled()
  })

  it('refuses with 502 api_error when no backend can be reached', async () => {
    const response = await fetchWithEnv({ BACKEND_URLS: 'http://127.0.0.1:9' }, '/v1/messages', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_SECRET },
      body: JSON.stringify(ask('Hi')),
    })
    await anthropicError(response, 502, 'api_error')
  })
})

describe('records', () => {
  async function scrape(): Promise<(sample: string) => number> {
    const text = await (await callWorker('/metrics', { headers: await adminAuth() })).text()
    return (sample) => {
      const line = text.split('\n').find((candidate) => candidate.startsWith(`${sample} `))
      return line === undefined ? 0 : Number(line.slice(sample.length + 1))
    }
  }

  it('counts Messages responses by their route pattern, and each generation as a chat request with its first token', async () => {
    const backendId = new URL(emulatorUrl).host
    const before = await scrape()
    await (await postMessages(ask('Hi', { stream: true }))).text()
    await (await postMessages(ask('Hi'))).text()
    await (await postMessages({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }, undefined, '/v1/messages/count_tokens')).text()
    await flushLatency()
    const after = await scrape()
    const grew = (sample: string) => after(sample) - before(sample)
    expect(grew('edge_proxy_responses_total{route="/v1/messages",status="200"}')).toBe(2)
    expect(grew('edge_proxy_responses_total{route="/v1/messages/count_tokens",status="200"}')).toBe(1)
    expect(grew(`edge_proxy_chat_requests_total{backend="${backendId}",outcome="ok"}`)).toBe(2)
    expect(grew(`edge_proxy_time_to_first_token_seconds_count{backend="${backendId}"}`)).toBe(2)
  })
})

describe('POST /v1/messages/count_tokens', () => {
  it("counts the prompt as the generation's input_tokens", async () => {
    const request = { model: MODEL, system: 'Be brief.', messages: [{ role: 'user', content: 'What is 7 * 6?' }] }
    const response = await postMessages(request, { 'x-api-key': TEST_SECRET }, '/v1/messages/count_tokens')
    expect(response.status).toBe(200)
    const { input_tokens } = (await response.json()) as { input_tokens: number }
    const message = (await (await postMessages({ ...request, max_tokens: 50 })).json()) as MessageBody
    expect(input_tokens).toBe(message.usage.input_tokens)
  })

  it('refuses what the Messages API refuses, in its shape', async () => {
    const response = await postMessages(
      { model: MODEL, messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] },
      undefined,
      '/v1/messages/count_tokens',
    )
    await anthropicError(response, 400, 'invalid_request_error')
    const unknown = await postMessages(
      { model: 'nope', messages: [{ role: 'user', content: 'Hi' }] },
      undefined,
      '/v1/messages/count_tokens',
    )
    await anthropicError(unknown, 404, 'not_found_error')
  })

  it('fails over from a backend that cannot be reached', async () => {
    const response = await fetchWithEnv({ BACKEND_URLS: `http://127.0.0.1:9,${emulatorUrl}` }, '/v1/messages/count_tokens', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': TEST_SECRET },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    })
    expect(response.status).toBe(200)
    expect(((await response.json()) as { input_tokens: number }).input_tokens).toBeGreaterThan(0)
  })
})
