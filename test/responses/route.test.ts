import { describe, expect, it } from 'vitest'
import { MODEL, callWorker, chatInit, fetchWithEnv, recordedRequests, resetEmulator } from '../support/worker.ts'

// POST /v1/responses in workerd against the emulator: the translation onto the chat path, the
// response object, the event sequence, and the refusals.

interface ResponseBody {
  id: string
  object: string
  status: string
  model: string
  output: { type: string; id: string; status: string; content: { type: string; text: string }[]; summary?: unknown[] }[]
  incomplete_details: { reason: string } | null
  usage: {
    input_tokens: number
    output_tokens: number
    total_tokens: number
    output_tokens_details: { reasoning_tokens: number }
    input_tokens_details: { cached_tokens: number }
  }
}

interface Event {
  type: string
  sequence_number: number
  output_index?: number
  item_id?: string
  delta?: string
  response?: ResponseBody
  item?: { id: string; type: string }
  message?: string
  code?: string
}

function postResponses(body: unknown, headers: Record<string, string> = {}) {
  return callWorker('/v1/responses', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  })
}

/** The SSE events of a Responses stream; each frame must name its type twice (event: and data). */
function responseEvents(text: string): Event[] {
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

async function lastUpstreamBody(): Promise<Record<string, unknown>> {
  const requests = await recordedRequests()
  return requests.filter((request) => request.path === '/v1/chat/completions').at(-1)?.body ?? {}
}

describe('POST /v1/responses, stream: false', () => {
  it('answers a response object with a reasoning item, a message item and usage', async () => {
    const response = await postResponses({ model: MODEL, input: 'What is 7 * 6?' })
    expect(response.status).toBe(200)
    const body = (await response.json()) as ResponseBody
    expect(body.id).toMatch(/^resp_[0-9a-f]{32}$/)
    expect(body.object).toBe('response')
    expect(body.status).toBe('completed')
    expect(body.incomplete_details).toBeNull()
    expect(body.output.map((item) => item.type)).toEqual(['reasoning', 'message'])
    const [reasoning, message] = body.output
    expect(reasoning?.id).toMatch(/^rs_/)
    expect(reasoning?.content[0]?.type).toBe('reasoning_text')
    expect(reasoning?.content[0]?.text).toMatch(/\S/)
    expect(reasoning?.summary).toEqual([])
    expect(message?.id).toMatch(/^msg_/)
    expect(message?.status).toBe('completed')
    expect(message?.content[0]?.type).toBe('output_text')
    expect(message?.content[0]?.text).toMatch(/\S/)
    const { usage } = body
    expect(usage.input_tokens).toBeGreaterThan(0)
    expect(usage.total_tokens).toBe(usage.input_tokens + usage.output_tokens)
    expect(usage.output_tokens_details.reasoning_tokens).toBeGreaterThan(0)
    expect(usage.output_tokens_details.reasoning_tokens).toBeLessThan(usage.output_tokens)
  })

  it('counts the reasoning tokens the backend generated for the reasoning', async () => {
    const body = (await (await postResponses({ input: '[emulator reasoning_tokens=7 content_tokens=5] Hi' })).json()) as ResponseBody
    expect(body.usage.output_tokens_details.reasoning_tokens).toBe(7)
    expect(body.usage.output_tokens).toBeGreaterThanOrEqual(12)
  })

  it('is incomplete with reason max_output_tokens when cut by length', async () => {
    const body = (await (await postResponses({ input: 'Tell a long story.', max_output_tokens: 3 })).json()) as ResponseBody
    expect(body.status).toBe('incomplete')
    expect(body.incomplete_details).toEqual({ reason: 'max_output_tokens' })
    expect(body.output.at(-1)?.status).toBe('incomplete')
    expect(body.usage.output_tokens).toBe(3)
  })

  it('ends an answer cut inside the reasoning with the reasoning item incomplete and no empty message item', async () => {
    const input = '[emulator reasoning_tokens=10 content_tokens=5] Hi'
    const body = (await (await postResponses({ input, max_output_tokens: 3 })).json()) as ResponseBody
    expect(body.status).toBe('incomplete')
    expect(body.incomplete_details).toEqual({ reason: 'max_output_tokens' })
    expect(body.output.map((item) => [item.type, item.status])).toEqual([['reasoning', 'incomplete']])
    expect(body.output[0]?.content[0]?.text).toMatch(/\S/)
    expect(body.usage.output_tokens_details.reasoning_tokens).toBe(3)
  })

  it('marks only the message item incomplete when the cut falls in the answer', async () => {
    const input = '[emulator reasoning_tokens=3 content_tokens=10] Hi'
    const body = (await (await postResponses({ input, max_output_tokens: 7 })).json()) as ResponseBody
    expect(body.status).toBe('incomplete')
    expect(body.output.map((item) => [item.type, item.status])).toEqual([
      ['reasoning', 'completed'],
      ['message', 'incomplete'],
    ])
  })

  it('goes upstream as a chat request: instructions folded by the prompt rules, developer as system, settings mapped', async () => {
    await resetEmulator()
    const response = await postResponses({
      instructions: 'Answer briefly.',
      input: [
        { role: 'developer', content: 'Use plain words.' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hello' }] },
        { type: 'reasoning', id: 'rs_1', summary: [] },
        {
          type: 'message',
          role: 'assistant',
          id: 'msg_1',
          status: 'completed',
          content: [{ type: 'output_text', text: 'Hi.', annotations: [] }],
        },
        { role: 'user', content: 'How are you?' },
      ],
      max_output_tokens: 50,
      temperature: 0.5,
      top_p: 0.9,
      user: 'u-1',
      metadata: { ticket: '42' },
      store: false,
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('x-prompt-rules')).toContain('fold_system')
    // Upstream it is a chat request only: vLLM's own /v1/responses is never called (the tunnel allow-list stays).
    expect((await recordedRequests()).map((request) => `${request.method} ${request.path}`)).toEqual(['POST /v1/chat/completions'])
    const upstream = await lastUpstreamBody()
    const messages = upstream.messages as { role: string; content: unknown }[]
    expect(messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user'])
    expect(JSON.stringify(messages[0]?.content)).toContain('Answer briefly.')
    expect(JSON.stringify(messages[0]?.content)).toContain('Use plain words.')
    expect(upstream).toMatchObject({ max_tokens: 50, temperature: 0.5, top_p: 0.9, user: 'u-1', stream: true })
    expect(upstream).not.toHaveProperty('metadata')
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({ metadata: { ticket: '42' }, user: 'u-1', temperature: 0.5, top_p: 0.9, store: false })
  })

  it('maps text.format json_schema to the chat response_format', async () => {
    const schema = { type: 'object', properties: { answer: { type: 'integer' } }, required: ['answer'] }
    const response = await postResponses({
      input: 'What is 7 * 6?',
      text: { format: { type: 'json_schema', name: 'answer', schema, strict: true } },
    })
    expect(response.status).toBe(200)
    expect((await lastUpstreamBody()).response_format).toEqual({
      type: 'json_schema',
      json_schema: { name: 'answer', schema, strict: true },
    })
  })
})

describe('POST /v1/responses, stream: true', () => {
  it('sends the Responses event sequence with sequence numbers, reasoning first, then the answer', async () => {
    const response = await postResponses({ input: 'What is 7 * 6?', stream: true })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const events = responseEvents(await response.text())
    expect(events.map((event) => event.sequence_number)).toEqual(events.map((_, index) => index))
    const types = events.map((event) => event.type)
    const distinct = types.filter((type, index) => type !== types[index - 1])
    expect(distinct).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.reasoning_text.delta',
      'response.reasoning_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ])
    const completed = events.at(-1)?.response as ResponseBody
    const streamedText = events
      .filter((event) => event.type === 'response.output_text.delta')
      .map((event) => event.delta)
      .join('')
    expect(completed.output[1]?.content[0]?.text).toBe(streamedText)
    expect(completed.id).toBe(events[0]?.response?.id)
    expect(completed.usage.output_tokens_details.reasoning_tokens).toBeGreaterThan(0)
  })

  it('adds summary events when the client asks for a reasoning summary', async () => {
    const response = await postResponses({ input: 'Hi', stream: true, reasoning: { summary: 'auto' } })
    const events = responseEvents(await response.text())
    const summary = events.filter((event) => event.type === 'response.reasoning_summary_text.delta').map((event) => event.delta)
    const reasoning = events.filter((event) => event.type === 'response.reasoning_text.delta').map((event) => event.delta)
    expect(summary.length).toBeGreaterThan(0)
    expect(summary).toEqual(reasoning)
  })

  it('ends a stream whose backend fails mid-answer with error and response.failed, never a silent close', async () => {
    const response = await postResponses({ input: '[emulator fault=die_after:3] Hi', stream: true })
    const events = responseEvents(await response.text())
    const types = events.map((event) => event.type)
    expect(types.slice(-2)).toEqual(['error', 'response.failed'])
    expect(events.at(-2)?.code).toMatch(/^upstream_/)
    expect(events.at(-1)?.response?.status).toBe('failed')
    expect(types).not.toContain('response.completed')
  })

  it('keeps a waiting stream alive with comments, then ends it with error and response.failed', async () => {
    const response = await fetchWithEnv(
      { FIRST_EVENT_TIMEOUT_MS: '700', KEEPALIVE_INTERVAL_MS: '200' },
      '/v1/responses',
      chatInit({ input: '[emulator ttft_ms=5000] Hi', stream: true }),
    )
    expect(response.status).toBe(200)
    const text = await response.text()
    expect(text.split('\n\n').filter((frame) => frame === ': keep-alive').length).toBeGreaterThanOrEqual(2)
    const events = responseEvents(text)
    expect(events.map((event) => event.type)).toEqual(['response.created', 'response.in_progress', 'error', 'response.failed'])
    expect(events[2]).toMatchObject({ code: 'upstream_timeout' })
  })

  it('is response.incomplete when cut by length', async () => {
    const events = responseEvents(await (await postResponses({ input: 'Hi', stream: true, max_output_tokens: 2 })).text())
    expect(events.at(-1)?.type).toBe('response.incomplete')
    expect(events.at(-1)?.response?.incomplete_details).toEqual({ reason: 'max_output_tokens' })
  })

  it('ends a stream cut inside the reasoning with the reasoning item incomplete and no message item', async () => {
    const input = '[emulator reasoning_tokens=10 content_tokens=5] Hi'
    const events = responseEvents(await (await postResponses({ input, stream: true, max_output_tokens: 3 })).text())
    expect(events.filter((event) => event.type === 'response.output_item.added').map((event) => event.item?.type)).toEqual(['reasoning'])
    expect(events.some((event) => event.type.startsWith('response.output_text.'))).toBe(false)
    const done = events.filter((event) => event.type === 'response.output_item.done')
    expect(done.map((event) => [event.item?.type, (event.item as { status?: string } | undefined)?.status])).toEqual([
      ['reasoning', 'incomplete'],
    ])
    const last = events.at(-1)
    expect(last?.type).toBe('response.incomplete')
    expect(last?.response?.incomplete_details).toEqual({ reason: 'max_output_tokens' })
    expect(last?.response?.output.map((item) => [item.type, item.status])).toEqual([['reasoning', 'incomplete']])
  })
})

/** A Responses request to a deployment that stores nothing (RESPONSE_RETENTION_DAYS = 0). */
function postWithoutStorage(body: unknown) {
  return fetchWithEnv({ RESPONSE_RETENTION_DAYS: '0' }, '/v1/responses', chatInit(body))
}

describe('POST /v1/responses on a deployment that stores nothing', () => {
  it.each([
    [{ store: true }, 'store'],
    [{ previous_response_id: 'resp_1' }, 'previous_response_id'],
  ])('refuses %j with a 400 naming the field', async (extra, param) => {
    const response = await postWithoutStorage({ input: 'Hi', ...extra })
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as { error: { param: string; code: string; message: string } }
    expect(error).toMatchObject({ param, code: 'unsupported_parameter' })
    expect(error.message).toContain('keeps no responses')
  })

  it('refuses an item reference, which needs stored responses, naming its place', async () => {
    const response = await postWithoutStorage({
      input: [
        { role: 'user', content: 'Hi' },
        { type: 'item_reference', id: 'msg_1' },
      ],
    })
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as { error: { param: string; message: string } }
    expect(error.param).toBe('input[1]')
    expect(error.message).toContain('store')
  })

  it('answers store: false when the request leaves store out', async () => {
    const response = await postWithoutStorage({ input: 'Hi' })
    expect(response.status).toBe(200)
    expect(await response.json()).toMatchObject({ store: false })
  })
})

describe('POST /v1/responses refusals', () => {
  it.each([
    [{ background: true }, 'background'],
    [{ tools: [{ type: 'function', name: 'f', parameters: {} }] }, 'tools'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ reasoning: { effort: 'high' } }, 'reasoning.effort'],
  ])('refuses %j with a 400 naming the field', async (extra, param) => {
    const response = await postResponses({ input: 'Hi', ...extra })
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as { error: { param: string; code: string; type: string; message: string } }
    expect(error).toMatchObject({ param, code: 'unsupported_parameter', type: 'invalid_request_error' })
    expect(error.message).toContain(param)
  })

  it('refuses an unknown field like the chat route', async () => {
    const response = await postResponses({ input: 'Hi', surprise: 1 })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: 'surprise', code: 'unknown_parameter' } })
  })

  it('names the Responses field when a mapped setting is out of range', async () => {
    const response = await postResponses({ input: 'Hi', max_output_tokens: 0 })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: 'max_output_tokens', code: 'invalid_value' } })
  })

  it.each([
    [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 'metadata'],
    [{ metadata: { k: 'v'.repeat(513) } }, 'metadata.k'],
  ])('refuses metadata over OpenAI limits (%#)', async (extra, param) => {
    const response = await postResponses({ input: 'Hi', ...extra })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param, code: 'invalid_value' } })
  })

  it('names input when the prompt rules find no user text', async () => {
    const response = await postResponses({ input: '   ' })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({ error: { param: 'input', code: 'empty_prompt' } })
  })

  it('refuses an input item it cannot relay, naming it', async () => {
    const response = await postResponses({ input: [{ type: 'function_call_output', call_id: 'c', output: 'x' }] })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: { param: string } }).error.param).toMatch(/^input/)
  })

  it('accepts include reasoning.encrypted_content (the reasoning is plain text) and refuses other include values', async () => {
    expect((await postResponses({ input: 'Hi', include: ['reasoning.encrypted_content'] })).status).toBe(200)
    const refused = await postResponses({ input: 'Hi', include: ['message.output_text.logprobs'] })
    expect(refused.status).toBe(400)
    expect(await refused.json()).toMatchObject({ error: { param: 'include[0]' } })
  })

  it('needs a key with the chat scope', async () => {
    const response = await callWorker('/v1/responses', {
      method: 'POST',
      headers: { authorization: 'Bearer sk-nope', 'content-type': 'application/json' },
      body: '{"input":"Hi"}',
    })
    expect(response.status).toBe(401)
  })

  it('answers 405 to a GET', async () => {
    expect((await callWorker('/v1/responses')).status).toBe(405)
  })
})
