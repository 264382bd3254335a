import { exports } from 'cloudflare:workers'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { keyWithLimits, limiterState, RATE_LIMIT_HEADERS, type LimitedKey } from '../support/limits.ts'
import { createSession, endSessions, openEvents, postStream, readStream } from './helpers.ts'

// A stream session is admitted exactly like a chat completion: the same limits, the same 429s
// and headers, the per-IP rule for browser callers. Its lease is held by the session until the
// generation ends, not by the POST that created it.

afterAll(endSessions)

const SHORT = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=8 content_tokens=4] Tell me about rivers.'
const LONG = '[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=60] Tell me about oceans.'

async function mintToken(key: LimitedKey): Promise<string> {
  const response = await exports.default.fetch('http://gateway.test/v1/stream-tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
    body: '{}',
  })
  return ((await response.json()) as { token: string }).token
}

describe('admission of stream sessions', () => {
  it('holds a concurrent-stream slot until the generation ends, then charges what the backend reported', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const created = await postStream(LONG, { secret: key.secret })
    expect(created.status).toBe(201)
    for (const name of RATE_LIMIT_HEADERS) expect(created.headers.get(name)).not.toBeNull()
    const session = (await created.json()) as { url: string }
    const refused = await postStream(SHORT, { secret: key.secret })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect(await refused.json()).toMatchObject({ error: { type: 'concurrent_streams', code: 'rate_limit_exceeded' } })
    const { events } = await readStream(await openEvents(session.url))
    const usage = events.find((event) => event.event === 'usage')?.data as { prompt_tokens: number; completion_tokens: number }
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0), { timeout: 2_000, interval: 20 })
    expect((await limiterState(key.id)).usage.totals).toMatchObject({
      admitted: 1,
      prompt_tokens: usage.prompt_tokens,
      completion_tokens: usage.completion_tokens,
    })
  })

  it('refuses a key over its requests per minute with 429 requests', async () => {
    const key = await keyWithLimits({ requestsPerMinute: 1 })
    await createSession(SHORT, { secret: key.secret })
    const refused = await postStream(SHORT, { secret: key.secret })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    expect(await refused.json()).toMatchObject({ error: { type: 'requests', code: 'rate_limit_exceeded' } })
  })

  it('takes a stream token in the query, counts it against its key and each client IP on its own', async () => {
    const key = await keyWithLimits({ concurrentStreams: 5 })
    const token = await mintToken(key)
    const from = (ip: string) =>
      postStream(LONG, {
        secret: '',
        query: `?token=${token}`,
        headers: { 'cf-connecting-ip': ip },
        env: { CONCURRENT_STREAMS_PER_IP: '1' },
      })
    const first = await from('203.0.113.7')
    expect(first.status).toBe(201)
    const sameIp = await from('203.0.113.7')
    expect(sameIp.status).toBe(429)
    expect(await sameIp.json()).toMatchObject({ error: { type: 'concurrent_streams_per_ip' } })
    const otherIp = await from('203.0.113.8')
    expect(otherIp.status).toBe(201)
    expect((await limiterState(key.id)).usage.in_flight).toBe(2)
    for (const response of [first, otherIp]) await readStream(await openEvents(((await response.json()) as { url: string }).url))
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0), { timeout: 2_000, interval: 20 })
  })

  it('fails open like the chat route when the limiter cannot answer: admitted, without rate-limit headers', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const failing = { idFromName: (name: string) => ({ name }), get: () => ({ admit: () => Promise.reject(new Error('overloaded')) }) }
      const response = await postStream(SHORT, { env: { LIMITER: failing } })
      expect(response.status).toBe(201)
      for (const name of RATE_LIMIT_HEADERS) expect(response.headers.get(name)).toBeNull()
      const closed = await postStream(SHORT, { env: { LIMITER: failing, RATE_LIMITER_FAILURE_MODE: 'closed' } })
      expect(closed.status).toBe(503)
      expect(await closed.json()).toMatchObject({ error: { code: 'rate_limiter_unavailable' } })
    } finally {
      warn.mockRestore()
    }
  })
})
