import { describe, expect, it, vi } from 'vitest'
import { RATE_LIMIT_HEADERS, keyWithLimits, limiterState } from '../support/limits.ts'
import { chatBody, emulatorStats, postChat, resetEmulator } from '../support/worker.ts'
import { frames, readAll } from '../support/sse.ts'

const short = '[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

interface ErrorBody {
  error: { message: string; type: string; code: string; param: string | null }
}

describe('rate limits on POST /v1/chat/completions', () => {
  it('admits exactly 10 of 200 concurrent requests against a limit of 10 requests per minute', async () => {
    const key = await keyWithLimits({ requestsPerMinute: 10 })
    const responses = await Promise.all(Array.from({ length: 200 }, () => postChat(chatBody(short), { secret: key.secret })))
    const statuses = responses.map((r) => r.status)
    expect(statuses.filter((s) => s === 200)).toHaveLength(10)
    expect(statuses.filter((s) => s === 429)).toHaveLength(190)
    const refused = responses.find((r) => r.status === 429)!
    const body = (await refused.json()) as ErrorBody
    expect(body.error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded', param: null })
    expect(body.error.message).toMatch(/requests per minute \(RPM\): Limit 10, Used 10, Requested 1\. Please try again in \d+s\./)
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(59)
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    await Promise.all(responses.map((r) => (r.bodyUsed ? null : r.body?.cancel())))
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    expect((await limiterState(key.id)).usage.totals).toMatchObject({ admitted: 10, refused: { requests: 190 } })
  })

  it('keeps at most 3 streams in flight at the backend, refusing the others, with a limit of 3', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 3 })
    const body = chatBody('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=20 content_tokens=10]', { stream: true })
    const responses = await Promise.all(Array.from({ length: 50 }, () => postChat(body, { secret: key.secret })))
    const admitted = responses.filter((r) => r.status === 200)
    const refused = responses.filter((r) => r.status === 429)
    expect(admitted).toHaveLength(3)
    expect(refused).toHaveLength(47)
    const reason = (await refused[0]!.json()) as ErrorBody
    expect(reason.error).toMatchObject({ type: 'concurrent_streams', code: 'rate_limit_exceeded' })
    for (const response of admitted) expect(frames(await readAll(response.body!)).at(-1)).toBe('data: [DONE]')
    await Promise.all(refused.slice(1).map((r) => r.body?.cancel()))
    const stats = await emulatorStats()
    expect(stats.maxInFlight).toBe(3)
    expect(stats.completed).toBe(3)
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
  })

  it('never exceeds a tokens-per-minute limit with parallel requests: tokens are reserved before the request runs', async () => {
    const key = await keyWithLimits({ tokensPerMinute: 2_000 })
    const body = chatBody(`${short} Say hi.`, { max_tokens: 300 })
    const responses = await Promise.all(Array.from({ length: 30 }, () => postChat(body, { secret: key.secret })))
    const refused = responses.filter((r) => r.status === 429)
    const first = (await refused[0]!.json()) as ErrorBody
    expect(first.error.type).toBe('tokens')
    const reserve = Number(/Requested (\d+)\./.exec(first.error.message)?.[1])
    expect(reserve).toBeGreaterThan(300)
    // Every admitted request holds its whole reservation until it ends, so exactly this many fit.
    expect(responses.filter((r) => r.status === 200)).toHaveLength(Math.floor(2_000 / reserve))
    await Promise.all(responses.map((r) => (r.bodyUsed ? null : r.body?.cancel())))
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    const { usage } = await limiterState(key.id)
    // Settled: the window now holds what was really used, far below the reservations.
    expect(usage.totals.prompt_tokens + usage.totals.completion_tokens).toBe(2_000 - usage.tokens.remaining)
    expect(usage.tokens.remaining).toBeGreaterThan(2_000 - Math.floor(2_000 / reserve) * reserve)
  })

  it('sends the six x-ratelimit headers on success, streaming or not, counting down', async () => {
    const key = await keyWithLimits({ requestsPerMinute: 5, tokensPerMinute: 100_000 })
    const first = await postChat(chatBody(short), { secret: key.secret })
    const second = await postChat(chatBody(short, { stream: true }), { secret: key.secret })
    for (const response of [first, second]) {
      expect(response.status).toBe(200)
      for (const name of RATE_LIMIT_HEADERS) expect(response.headers.get(name), name).not.toBeNull()
      expect(response.headers.get('x-ratelimit-limit-requests')).toBe('5')
      expect(response.headers.get('x-ratelimit-limit-tokens')).toBe('100000')
      expect(response.headers.get('x-ratelimit-reset-requests')).toMatch(/^(\d+ms|[\d.]+s|1m0s)$/)
    }
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('4')
    expect(second.headers.get('x-ratelimit-remaining-requests')).toBe('3')
    expect(Number(second.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThan(
      Number(first.headers.get('x-ratelimit-remaining-tokens')),
    )
    await first.body?.cancel()
    await readAll(second.body!)
  })

  it('refuses a request larger than the tokens-per-minute limit itself, telling SDKs not to retry', async () => {
    const key = await keyWithLimits({ tokensPerMinute: 100 })
    const response = await postChat(chatBody(short, { max_tokens: 500 }), { secret: key.secret })
    expect(response.status).toBe(429)
    expect(response.headers.get('x-should-retry')).toBe('false')
    expect(response.headers.get('retry-after')).toBeNull()
    expect(((await response.json()) as ErrorBody).error.message).toMatch(/^Request too large for key_[0-9a-f]{16} on tokens per minute/)
  })
})
