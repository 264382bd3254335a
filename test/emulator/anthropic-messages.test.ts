// POST /v1/messages and /v1/messages/count_tokens as vLLM v0.20.2 serves them
// (vllm/entrypoints/anthropic/{api_router.py, protocol.py, serving.py}), on the emulator's chat path.

import { describe, expect, it } from 'vitest'
import { countChatPromptTokens } from '../../gpu-backend/emulator/tokenizer.ts'
import { emulatorFor, MODEL, post } from './helpers.ts'

const SMALL = 'reasoning_tokens=2 content_tokens=2'
const HEX32 = /^[0-9a-f]{32}$/

function messagesBody(directive = SMALL, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: MODEL, max_tokens: 100, messages: [{ role: 'user', content: `What is 2+2? [emulator ${directive}]` }], ...extra }
}

/** The prompt the chat path renders for the body's (string) messages, generation prompt included. */
function promptTokensOf(body: Record<string, unknown>): number {
  return countChatPromptTokens(body.messages as { role: string; content: string }[])
}

type Event = { name: string; data: Record<string, unknown> }

function parseEvents(text: string): Event[] {
  return text
    .split('\n\n')
    .filter((block) => block !== '')
    .map((block) => {
      const [eventLine = '', dataLine = ''] = block.split('\n')
      return { name: eventLine.slice('event: '.length), data: JSON.parse(dataLine.slice('data: '.length)) as Record<string, unknown> }
    })
}

describe('POST /v1/messages, stream: false (messages_full_converter)', () => {
  it('answers the thinking block first (a uuid4 hex signature), then the text, under the chat id', async () => {
    const emulator = await emulatorFor()
    const body = messagesBody()
    const response = await post(emulator, '/v1/messages', body)
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('application/json')
    const text = await response.text()
    const parsed = JSON.parse(text) as { id: string; content: { thinking?: string; text?: string; signature?: string }[] }
    const [thinking, answer] = parsed.content
    expect(parsed.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/)
    expect(thinking?.signature).toMatch(HEX32)
    // exclude_none: no stop_sequence, no kv_transfer_params, no cache token counts.
    expect(text).toBe(
      JSON.stringify({
        id: parsed.id,
        type: 'message',
        role: 'assistant',
        content: [
          { type: 'thinking', thinking: thinking?.thinking, signature: thinking?.signature },
          { type: 'text', text: answer?.text },
        ],
        model: MODEL,
        stop_reason: 'end_turn',
        // 2 reasoning tokens, </think>, 2 content tokens and EOS.
        usage: { input_tokens: promptTokensOf(body), output_tokens: 6 },
      }),
    )
    expect(answer?.text).toMatch(/^\n\n\S/)
  })

  it('maps finish_reason length to stop_reason max_tokens', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { max_tokens: 1 }))
    const parsed = (await response.json()) as { stop_reason: string; usage: { output_tokens: number }; content: { type: string }[] }
    expect(parsed.stop_reason).toBe('max_tokens')
    expect(parsed.usage.output_tokens).toBe(1)
    expect(parsed.content.map((block) => block.type)).toEqual(['thinking'])
  })

  it('without a reasoning parser answers one text block holding the </think> text', async () => {
    const emulator = await emulatorFor({ reasoningParser: null })
    const parsed = (await (await post(emulator, '/v1/messages', messagesBody())).json()) as { content: { type: string; text: string }[] }
    expect(parsed.content).toHaveLength(1)
    expect(parsed.content[0]?.type).toBe('text')
    expect(parsed.content[0]?.text).toContain('</think>')
  })

  it('ignores the thinking request field and unknown fields (pydantic extra="ignore")', async () => {
    const emulator = await emulatorFor()
    const body = messagesBody(SMALL, {
      thinking: { type: 'enabled', budget_tokens: 1024 },
      service_tier: 'auto',
      metadata: { user_id: 'u' },
    })
    const response = await post(emulator, '/v1/messages', body)
    expect(response.status).toBe(200)
  })

  it('takes the system prompt (string or text blocks) and assistant thinking blocks into the chat prompt', async () => {
    const emulator = await emulatorFor()
    const body = {
      model: MODEL,
      system: [
        { type: 'text', text: 'x-anthropic-billing-header: cc_version=1' },
        { type: 'text', text: 'Be brief.' },
      ],
      messages: [
        { role: 'user', content: 'Hi' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'plan', signature: 's' },
            { type: 'redacted_thinking', data: 'opaque' },
            { type: 'text', text: 'Hello' },
          ],
        },
        { role: 'user', content: [{ type: 'text', text: 'Again' }] },
      ],
    }
    const response = await post(emulator, '/v1/messages/count_tokens', body)
    const expected = countChatPromptTokens([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Again' },
    ])
    expect(await response.json()).toEqual({ input_tokens: expected, context_management: { original_input_tokens: expected } })
  })
})

describe('POST /v1/messages, stream: true (message_stream_converter)', () => {
  it('sends message_start, the thinking block closed by its signature_delta, the text block, message_delta and message_stop; no ping, no [DONE]', async () => {
    const emulator = await emulatorFor()
    const body = messagesBody(SMALL, { stream: true })
    const response = await post(emulator, '/v1/messages', body)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    const text = await response.text()
    const events = parseEvents(text)
    const id = (events[0]?.data.message as { id: string }).id
    const delta = (index: number) => events[index]?.data.delta as Record<string, string>
    const [t0, t1, sig, c0, c1] = [delta(2).thinking, delta(3).thinking, delta(4).signature, delta(7).text, delta(8).text]
    const prompt = promptTokensOf(body)
    const json = JSON.stringify
    expect(id).toMatch(/^chatcmpl-[0-9a-f]{32}$/)
    expect(sig).toMatch(HEX32)
    expect(text).toBe(
      // exclude_unset: the message has neither type nor role (defaults never set).
      `event: message_start\ndata: {"type":"message_start","message":{"id":"${id}","content":[],"model":"${MODEL}","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":${prompt},"output_tokens":0}}}\n\n` +
        'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"thinking","thinking":""},"index":0}\n\n' +
        `event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":${json(t0)}},"index":0}\n\n` +
        `event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":${json(t1)}},"index":0}\n\n` +
        `event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"signature_delta","signature":"${sig}"},"index":0}\n\n` +
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n' +
        'event: content_block_start\ndata: {"type":"content_block_start","content_block":{"type":"text","text":""},"index":1}\n\n' +
        `event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":${json(c0)}},"index":1}\n\n` +
        `event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"type":"text_delta","text":${json(c1)}},"index":1}\n\n` +
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n' +
        `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":${prompt},"output_tokens":6}}\n\n` +
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    )
  })

  it('sends its first event no sooner than ttft after the request', async () => {
    const emulator = await emulatorFor({ ttftMs: 150 })
    const started = performance.now()
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { stream: true }))
    const reader = response.body!.getReader()
    const first = await reader.read()
    const elapsed = performance.now() - started
    await reader.cancel()
    expect(new TextDecoder().decode(first.value)).toMatch(/^event: message_start\n/)
    expect(elapsed).toBeGreaterThanOrEqual(145)
  })

  it('ends a stream whose chat generation fails mid-way with one event: error (internal_error, pydantic text) and no message_stop', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', messagesBody('fault=error_after:1', { stream: true }))
    const events = parseEvents(await response.text())
    expect(events.map((event) => event.name)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'error'])
    const error = events.at(-1)?.data as { type: string; error: { type: string; message: string } }
    expect(error.type).toBe('error')
    expect(error.error.type).toBe('internal_error')
    // The chat path's {"error": ...} chunk fails ChatCompletionStreamResponse.model_validate_json.
    const value = "{'error': {'message': 'En...am': None, 'code': 500}}"
    const line = (field: string) =>
      `${field}\n  Field required [type=missing, input_value=${value}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.13/v/missing`
    expect(error.error.message).toBe(`2 validation errors for ChatCompletionStreamResponse\n${line('model')}\n${line('choices')}`)
  })
})

describe('errors on /v1/messages', () => {
  it('refuses a request without max_tokens in the OpenAI shape of the app-wide validation handler', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', { model: MODEL, messages: [{ role: 'user', content: 'Hi' }] })
    expect(response.status).toBe(400)
    const body = (await response.json()) as { error: { type: string; message: string; code: number } }
    expect(body.error.type).toBe('Bad Request')
    expect(body.error.code).toBe(400)
    expect(body.error.message).toContain("'loc': ('body', 'max_tokens'), 'msg': 'Field required'")
  })

  it('refuses max_tokens 0 with "max_tokens must be positive"', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { max_tokens: 0 }))
    expect(response.status).toBe(400)
    const body = (await response.json()) as { error: { message: string } }
    expect(body.error.message).toContain("'msg': 'Value error, max_tokens must be positive'")
  })

  it('refuses a role other than user or assistant, and an unknown block type, as pydantic reports them', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', {
      model: MODEL,
      max_tokens: 5,
      messages: [
        { role: 'system', content: 'x' },
        { role: 'user', content: [{ type: 'video' }] },
      ],
    })
    const body = (await response.json()) as { error: { message: string } }
    expect(body.error.message).toBe(
      "[{'type': 'literal_error', 'loc': ('body', 'messages', 0, 'role'), 'msg': \"Input should be 'user' or 'assistant'\"}, " +
        "{'type': 'string_type', 'loc': ('body', 'messages', 1, 'content', 'str'), 'msg': 'Input should be a valid string'}, " +
        "{'type': 'literal_error', 'loc': ('body', 'messages', 1, 'content', 'list[AnthropicContentBlock]', 0, 'type'), " +
        "'msg': \"Input should be 'text', 'image', 'tool_use', 'tool_result', 'thinking' or 'redacted_thinking'\"}]",
    )
  })

  it('wraps an ErrorResponse (an unknown model) as {"type":"error","error":{type, message}} with its status', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { model: 'other' }))
    expect(response.status).toBe(404)
    expect(await response.text()).toBe('{"type":"error","error":{"type":"NotFoundError","message":"The model `other` does not exist."}}')
  })

  it('refuses tools (tool_choice "auto") as render_chat does without a tool parser', async () => {
    const emulator = await emulatorFor()
    const tools = [{ name: 'get_weather', input_schema: { properties: {} } }]
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { tools }))
    expect(response.status).toBe(400)
    expect(await response.json()).toEqual({
      type: 'error',
      error: { type: 'BadRequestError', message: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set' },
    })
  })

  it("answers a dead engine with 500 internal_error: the exception reaches the route's except", async () => {
    const emulator = await emulatorFor({ engineDead: true })
    for (const stream of [false, true]) {
      const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { stream }))
      expect(response.status).toBe(500)
      expect(await response.json()).toEqual({
        type: 'error',
        error: { type: 'internal_error', message: 'EngineCore encountered an issue. See stack trace (above) for the root cause.' },
      })
    }
  })

  it('answers a prompt beyond the context length with 500 internal_error: renderers raise VLLMValidationError', async () => {
    const emulator = await emulatorFor({ maxModelLen: 20 })
    const response = await post(emulator, '/v1/messages', messagesBody(SMALL, { max_tokens: 10 }))
    expect(response.status).toBe(500)
    const body = (await response.json()) as { type: string; error: { type: string; message: string } }
    expect(body.error.type).toBe('internal_error')
    expect(body.error.message).toContain("This model's maximum context length is 20 tokens")
  })
})

describe('authentication and routing', () => {
  it('takes the key as a Bearer token only; x-api-key is not read', async () => {
    const emulator = await emulatorFor({ apiKey: 'sk-test' })
    const denied = await post(emulator, '/v1/messages', messagesBody(), { headers: { 'x-api-key': 'sk-test' } })
    expect(denied.status).toBe(401)
    expect(await denied.text()).toBe('{"error":"Unauthorized"}')
    const allowed = await post(emulator, '/v1/messages', messagesBody(), { headers: { authorization: 'Bearer sk-test' } })
    expect(allowed.status).toBe(200)
  })

  it('answers GET with 405, as FastAPI does for a POST-only route', async () => {
    const emulator = await emulatorFor()
    const response = await fetch(`${emulator.url}/v1/messages`)
    expect(response.status).toBe(405)
    expect(await response.text()).toBe('{"detail":"Method Not Allowed"}')
  })

  it('does not exist in v0.11.0 (vllm/entrypoints/anthropic arrived in v0.11.1)', async () => {
    const emulator = await emulatorFor({ vllmVersion: '0.11.0' } as Record<string, unknown>)
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const response = await post(emulator, path, messagesBody())
      expect(response.status).toBe(404)
      expect(await response.text()).toBe('{"detail":"Not Found"}')
    }
  })
})

describe('POST /v1/messages/count_tokens', () => {
  it('counts the rendered chat prompt, generation prompt included, the same as input_tokens on the messages route', async () => {
    const emulator = await emulatorFor()
    const body = { model: MODEL, system: 'Be brief.', messages: [{ role: 'user', content: 'What is 2+2?' }] }
    const response = await post(emulator, '/v1/messages/count_tokens', body)
    const expected = countChatPromptTokens([{ role: 'system', content: 'Be brief.' }, ...body.messages])
    expect(await response.text()).toBe(`{"input_tokens":${expected},"context_management":{"original_input_tokens":${expected}}}`)
    const answered = (await (await post(emulator, '/v1/messages', { ...body, max_tokens: 3 })).json()) as {
      usage: { input_tokens: number }
    }
    expect(answered.usage.input_tokens).toBe(expected)
  })

  it('needs no max_tokens and refuses an unknown model as the messages route does', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/messages/count_tokens', { model: 'other', messages: [{ role: 'user', content: 'Hi' }] })
    expect(response.status).toBe(404)
    expect(await response.json()).toEqual({ type: 'error', error: { type: 'NotFoundError', message: 'The model `other` does not exist.' } })
  })
})
