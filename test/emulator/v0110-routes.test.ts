// Request ids, the API key and the routes outside /v1, as vLLM v0.11.0's api_server.py,
// serving_engine.py and v1/engine/output_processor.py have them.

import { describe, expect, it } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { countChatPromptTokens } from '../../gpu-backend/emulator/tokenizer.ts'
import { chatBody, emulatorV0110, eventually, MODEL, post } from './helpers.ts'
import { payloads, readUntil } from '../support/sse.ts'

const KEY = 'sk-test'
const hold = chatBody('fault=stall_after:1', { stream: true })

/** A stream that stays open (stall_after), read until its first token; abort() ends it. */
async function held(emulator: Emulator, headers: Record<string, string>): Promise<{ id: string; abort: () => void }> {
  const controller = new AbortController()
  const response = await post(emulator, '/v1/chat/completions', hold, { headers, signal: controller.signal })
  const reader = (response.body as ReadableStream<Uint8Array>).getReader()
  const text = await readUntil(reader, (sofar) => sofar.split('\n\n').length > 2)
  return { id: String(payloads(text.slice(0, text.indexOf('\n\n') + 2))[0]?.id), abort: () => controller.abort() }
}

describe('request ids', () => {
  it('answers with "chatcmpl-" + the X-Request-Id header as the response id', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { headers: { 'x-request-id': 'abc-123' } })
    expect(((await response.json()) as { id: string }).id).toBe('chatcmpl-abc-123')
  })

  it("uses the body's request_id without the header, and 32 random hex characters without either", async () => {
    const emulator = await emulatorV0110()
    const named = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1', { request_id: 'mine' }))
    expect(((await named.json()) as { id: string }).id).toBe('chatcmpl-mine')
    const plain = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'))
    expect(((await plain.json()) as { id: string }).id).toMatch(/^chatcmpl-[0-9a-f]{32}$/)
  })

  it('refuses a second stream whose id is already running after the 200: one 400 error event, then [DONE]', async () => {
    const emulator = await emulatorV0110()
    const first = await held(emulator, { 'x-request-id': 'dup' })
    const second = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1', { stream: true }), {
      headers: { 'x-request-id': 'dup' },
    })
    expect(second.status).toBe(200)
    expect(await second.text()).toBe(
      'data: {"error": {"message": "Request id chatcmpl-dup already running.", "type": "BadRequestError", "param": null, "code": 400}}\n\n' +
        'data: [DONE]\n\n',
    )
    first.abort()
  })

  it('refuses it as a 400 JSON body for stream: false, and takes the id again once the first has ended', async () => {
    const emulator = await emulatorV0110()
    const first = await held(emulator, { 'x-request-id': 'dup' })
    const second = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { headers: { 'x-request-id': 'dup' } })
    expect(second.status).toBe(400)
    expect(((await second.json()) as { error: { message: string } }).error.message).toBe('Request id chatcmpl-dup already running.')
    first.abort()
    await eventually(
      () => emulator.stats().inFlight,
      (n) => n === 0,
    )
    const third = await post(emulator, '/v1/chat/completions', chatBody('content_tokens=1'), { headers: { 'x-request-id': 'dup' } })
    expect(third.status).toBe(200)
  })
})

describe('the API key (AuthenticationMiddleware)', () => {
  it('accepts the Bearer scheme in any case, and nothing but the exact key after the first space', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const status = async (authorization: string) => (await fetch(`${emulator.url}/v1/models`, { headers: { authorization } })).status
    expect(await status(`bearer ${KEY}`)).toBe(200)
    expect(await status(`BEARER ${KEY}`)).toBe(200)
    expect(await status(`Bearer  ${KEY}`)).toBe(401)
    expect(await status(`Basic ${KEY}`)).toBe(401)
  })

  it('lets OPTIONS through without a key and guards every path that starts with /v1', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    expect((await fetch(`${emulator.url}/v1/chat/completions`, { method: 'OPTIONS' })).status).toBe(405)
    const neighbour = await fetch(`${emulator.url}/v1beta/models`)
    expect(neighbour.status).toBe(401)
    expect(await neighbour.text()).toBe('{"error":"Unauthorized"}')
  })
})

describe('routes outside /v1, open even with --api-key', () => {
  it('answers /ping like /health, on GET and POST', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    expect((await fetch(`${emulator.url}/ping`)).status).toBe(200)
    expect((await fetch(`${emulator.url}/ping`, { method: 'POST' })).status).toBe(200)
    emulator.configure({ healthy: false })
    expect((await fetch(`${emulator.url}/ping`)).status).toBe(503)
  })

  it('answers /version with v0.11.0', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    expect(await (await fetch(`${emulator.url}/version`)).text()).toBe('{"version":"0.11.0"}')
  })

  it('answers /load with 0 without --enable-server-load-tracking, and the requests in flight with it', async () => {
    const untracked = await emulatorV0110()
    const first = await held(untracked, {})
    expect(await (await fetch(`${untracked.url}/load`)).text()).toBe('{"server_load":0}')
    first.abort()
    const tracked = await emulatorV0110({ enableServerLoadTracking: true })
    const second = await held(tracked, {})
    expect(await (await fetch(`${tracked.url}/load`)).text()).toBe('{"server_load":1}')
    second.abort()
    await eventually(
      async () => (await fetch(`${tracked.url}/load`)).text(),
      (text) => text === '{"server_load":0}',
    )
  })

  it('runs a chat completion on /invocations without the API key', async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const response = await post(emulator, '/invocations', chatBody('content_tokens=1'))
    expect(response.status).toBe(200)
    expect((await response.json()) as { object: string }).toMatchObject({ object: 'chat.completion' })
  })

  it('runs a completion on /invocations for a prompt body, and refuses a body no request model fits', async () => {
    const emulator = await emulatorV0110()
    const completion = await post(emulator, '/invocations', { model: MODEL, prompt: 'Hi', max_tokens: 2 })
    expect((await completion.json()) as { object: string }).toMatchObject({ object: 'text_completion' })
    const neither = await post(emulator, '/invocations', { model: MODEL })
    expect(neither.status).toBe(400)
    expect(((await neither.json()) as { error: { message: string } }).error.message).toBe(
      "Cannot find suitable handler for request. Expected one of: ['ChatCompletionRequest', 'CompletionRequest']",
    )
  })

  it("answers /tokenize for messages with the chat endpoint's count in TokenizeResponse's shape", async () => {
    const emulator = await emulatorV0110({ apiKey: KEY })
    const messages = [{ role: 'user', content: 'Hi' }]
    const response = await post(emulator, '/tokenize', { model: MODEL, messages })
    expect(await response.text()).toBe(
      JSON.stringify({
        count: countChatPromptTokens(messages),
        max_model_len: 4096,
        tokens: [151646, 151644, 13048, 151645, 151648, 198],
        token_strs: null,
      }),
    )
  })

  it('answers /tokenize for a prompt with BOS added, and /detokenize gives the text back', async () => {
    const emulator = await emulatorV0110()
    const tokenized = (await (await post(emulator, '/tokenize', { prompt: 'Hello world', return_token_strs: true })).json()) as {
      tokens: number[]
      token_strs: string[]
    }
    expect(tokenized.token_strs).toEqual(['<｜begin▁of▁sentence｜>', 'Hello', 'Ġworld'])
    const detokenized = await post(emulator, '/detokenize', { tokens: tokenized.tokens })
    expect(await detokenized.text()).toBe(JSON.stringify({ prompt: '<｜begin▁of▁sentence｜>Hello world' }))
  })
})
