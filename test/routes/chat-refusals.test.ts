import { afterEach, describe, expect, it } from 'vitest'
import { chatBody, chatInit, configureEmulator, fetchWithEnv, postChat } from '../support/worker.ts'
import { frames } from '../support/sse.ts'

afterEach(async () => {
  await configureEmulator({ errorFormat: 'current' })
})

describe('a backend that refuses before streaming', () => {
  it.each([
    [400, 'invalid_request_error'],
    [404, 'not_found_error'],
    [429, 'rate_limit_error'],
    [500, 'server_error'],
    [503, 'server_error'],
  ])('passes status %i on as an OpenAI-shaped error', async (status, type) => {
    const response = await postChat(chatBody(`[emulator fault=refuse:${status}]`, { stream: true }))
    expect(response.status).toBe(status)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    const body = (await response.json()) as { error: { message: string; type: string; param: unknown; code: unknown } }
    expect(body.error.type).toBe(type)
    expect(body.error.message).not.toBe('')
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  })

  // 20,000 x's and 3,900 more tokens: over the context for vLLM, not certainly over for the
  // gateway's floor (at least 162 prompt tokens), so the backend is the one that refuses.
  it("reads vLLM's legacy error body (v0.10.0 and earlier) too", async () => {
    await configureEmulator({ errorFormat: 'legacy' })
    const response = await postChat(chatBody('x'.repeat(20_000), { stream: true, max_tokens: 3900 }))
    expect(response.status).toBe(400)
    const body = (await response.json()) as { error: { message: string } }
    expect(body.error.message).toMatch(/maximum context length is 4096 tokens/)
  })

  it('keeps the backend message for the current error format', async () => {
    const response = await postChat(chatBody('x'.repeat(20_000), { stream: false, max_tokens: 3900 }))
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/maximum context length/)
  })

  it("answers 502, not the backend's 401, when the gateway's backend key is wrong", async () => {
    const response = await fetchWithEnv({ BACKEND_API_KEY: 'wrong-key-123' }, '/v1/chat/completions', chatInit(chatBody('Hi')))
    expect(response.status).toBe(502)
    const text = await response.text()
    expect(JSON.parse(text)).toMatchObject({ error: { code: 'upstream_auth_failed' } })
    expect(text).not.toContain('wrong-key-123')
  })

  it('answers 502 when no backend can be reached', async () => {
    const response = await fetchWithEnv(
      { BACKEND_URLS: 'http://127.0.0.1:1' },
      '/v1/chat/completions',
      chatInit(chatBody('Hi', { stream: true })),
    )
    expect(response.status).toBe(502)
    expect(await response.json()).toMatchObject({ error: { code: 'upstream_unreachable', type: 'server_error' } })
  })
})

describe('a backend that is too slow', () => {
  it('answers 504 when the first event misses the deadline before any keep-alive was due', async () => {
    const started = Date.now()
    const response = await fetchWithEnv(
      { FIRST_EVENT_TIMEOUT_MS: '300', KEEPALIVE_INTERVAL_MS: '10000' },
      '/v1/chat/completions',
      chatInit(chatBody('[emulator fault=hang]', { stream: true })),
    )
    expect(response.status).toBe(504)
    expect(await response.json()).toMatchObject({ error: { code: 'upstream_timeout', type: 'timeout_error' } })
    expect(Date.now() - started).toBeLessThan(3_000)
  })

  it('keeps the stream alive with comments, then ends it with a 504 error event and [DONE]', async () => {
    const response = await fetchWithEnv(
      { FIRST_EVENT_TIMEOUT_MS: '700', KEEPALIVE_INTERVAL_MS: '200' },
      '/v1/chat/completions',
      chatInit(chatBody('[emulator ttft_ms=5000]', { stream: true })),
    )
    expect(response.status).toBe(200)
    const sent = frames(await response.text())
    expect(sent.filter((frame) => frame === ': keep-alive').length).toBeGreaterThanOrEqual(2)
    expect(sent.at(-2)).toBe(
      'data: {"error": {"message": "The backend sent no first event within 700 ms.", "type": "timeout_error", "param": null, "code": 504}}',
    )
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('ends a stream that falls silent mid-way with a 504 error event and [DONE]', async () => {
    const response = await fetchWithEnv(
      { EVENT_IDLE_TIMEOUT_MS: '300' },
      '/v1/chat/completions',
      chatInit(chatBody('[emulator fault=stall_after:2]', { stream: true })),
    )
    const sent = frames(await response.text())
    expect(sent.at(-2)).toContain('"code": 504')
    expect(sent.at(-1)).toBe('data: [DONE]')
  })
})
