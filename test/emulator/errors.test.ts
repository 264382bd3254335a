import { describe, expect, it } from 'vitest'
import { chatBody, emulatorV0110, post } from './helpers.ts'

// v0.11.0's _validate_input text (serving_engine.py), with the " None" serving_chat.py appends (f"{e} {e.__cause__}").
const CONTEXT_MESSAGE =
  "'max_tokens' or 'max_completion_tokens' is too large: 4096. This model's maximum context length is 4096 tokens " +
  'and your request has 8 input tokens (4096 > 4096 - 8). None'

// BOS, <｜User｜>, twenty, bytes, exactly, <｜Assistant｜>, <think>, \n: 8 prompt tokens.
const EIGHT_TOKEN_MESSAGES = [{ role: 'user', content: 'twenty bytes exactly' }]

describe('errors before the stream starts', () => {
  it('answers an unknown model with 404 NotFoundError in the current format, even for stream: true', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', { ...chatBody('', { stream: true }), model: 'gpt-4o' })
    expect(response.status).toBe(404)
    expect(response.headers.get('content-type')).toBe('application/json')
    expect(await response.text()).toBe(
      '{"error":{"message":"The model `gpt-4o` does not exist.","type":"NotFoundError","param":null,"code":404}}',
    )
  })

  it('answers an unknown model in the legacy format', async () => {
    const emulator = await emulatorV0110({ errorFormat: 'legacy' })
    const response = await post(emulator, '/v1/chat/completions', { ...chatBody(), model: 'gpt-4o' })
    expect(response.status).toBe(404)
    expect(await response.text()).toBe(
      '{"object":"error","message":"The model `gpt-4o` does not exist.","type":"NotFoundError","param":null,"code":404}',
    )
  })

  it('rejects prompt + max_tokens over max-model-len with the exact context-length message', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', { messages: EIGHT_TOKEN_MESSAGES, max_tokens: 4096, stream: true })
    expect(response.status).toBe(400)
    expect(await response.text()).toBe(
      JSON.stringify({ error: { message: CONTEXT_MESSAGE, type: 'BadRequestError', param: null, code: 400 } }),
    )
  })

  it('rejects the context overflow in the legacy format too', async () => {
    const emulator = await emulatorV0110({ errorFormat: 'legacy' })
    const response = await post(emulator, '/v1/chat/completions', { messages: EIGHT_TOKEN_MESSAGES, max_tokens: 4096 })
    expect(await response.text()).toBe(
      JSON.stringify({ object: 'error', message: CONTEXT_MESSAGE, type: 'BadRequestError', param: null, code: 400 }),
    )
  })

  it('rejects stream_options without stream: true with a 400', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', chatBody('', { stream_options: { include_usage: true } }))
    expect(response.status).toBe(400)
    const body = (await response.json()) as { error: { type: string; message: string; code: number } }
    expect(body.error.type).toBe('Bad Request') // FastAPI validation handler, v0.10.1+
    expect(body.error.code).toBe(400)
    expect(body.error.message).toContain('Stream options can only be defined when `stream=True`.')
  })

  it('names schema failures BadRequestError in the legacy format', async () => {
    const emulator = await emulatorV0110({ errorFormat: 'legacy' })
    const response = await post(emulator, '/v1/chat/completions', chatBody('', { stream: false, stream_options: { include_usage: true } }))
    const body = (await response.json()) as Record<string, unknown>
    expect(body).toMatchObject({ object: 'error', type: 'BadRequestError', param: null, code: 400 })
  })

  it.each([
    ['missing messages', { model: 'deepseek-r1-distill-qwen-1.5b' }, 'Field required'],
    ['empty messages', { messages: [] }, 'at least 1 item'],
    ['a message without a role', { messages: [{ content: 'hi' }] }, "('body', 'messages', 0)"],
    ['invalid JSON', '{"messages": [', 'JSON decode error'],
  ])('answers %s with 400, never 422', async (_name, body, fragment) => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', body)
    expect(response.status).toBe(400)
    const json = (await response.json()) as { error: { message: string } }
    expect(json.error.message).toContain(fragment)
  })

  it('requires content-type application/json like vLLM', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', chatBody(), { headers: { 'content-type': 'text/plain' } })
    expect(response.status).toBe(400)
    expect(await response.text()).toContain("Only 'application/json' is allowed")
  })

  it('rejects a directive with an unknown key instead of ignoring it', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', chatBody('ttft=5'))
    expect(response.status).toBe(400)
    expect(await response.text()).toContain('unknown key \\"ttft\\"')
  })

  it('answers max_tokens below 1 with vLLM sampling-params message', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', chatBody('', { max_tokens: 0 }))
    expect(response.status).toBe(400)
    expect(await response.text()).toContain('max_tokens must be at least 1, got 0.')
  })
})
