import { env } from 'cloudflare:workers'
import { describe, expect, it, vi } from 'vitest'
import { proxyCounters } from '../../src/telemetry/counters.ts'
import { distantLimiter, keyWithLimits, limiterState, type LimitedKey } from '../support/limits.ts'
import { chatBody, emulatorStats, fetchWithEnv, resetEmulator } from '../support/worker.ts'

// Speculative admission (docs/rate-limits.md): while the isolate's last answer for a key left clear
// headroom, the backend call starts as the key's limiter decides. The limiter stays the only arbiter.

const short = '[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=2 content_tokens=2]'
/** Long enough to be still generating when a refusal comes: its abort is what the emulator counts. */
const slow = '[emulator ttft_ms=3000 itl_ms=1 reasoning_tokens=2 content_tokens=2]'
/** The shared emulator's requests so far. */
const requestsSeen = async () => (await emulatorStats()).requests
const ROOMY = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreamsPerIp: null }

function chatAs(key: LimitedKey, body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
    body: JSON.stringify(body),
  }
}

/** Takes `count` stream slots of the key, as requests in other isolates would. */
async function holdSlots(key: LimitedKey, count: number, concurrentStreams: number): Promise<() => Promise<void>> {
  const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
  const limits = { ...ROOMY, concurrentStreams }
  const ids = Array.from({ length: count }, () => crypto.randomUUID())
  for (const leaseId of ids) expect((await limiter.admit({ leaseId, reserveTokens: 10, limits, clientIp: null })).admitted).toBe(true)
  return async () => {
    for (const leaseId of ids) await limiter.settle(leaseId, { promptTokens: 0, completionTokens: 0 })
  }
}

interface ErrorBody {
  error: { type: string; code: string }
}

describe('speculative admission on POST /v1/chat/completions', () => {
  it('calls the backend while the limiter decides when the last answer left clear headroom, and answers normally once admitted', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 8 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    const { namespace, observed } = distantLimiter(requestsSeen, (await emulatorStats()).requests, 5_000)
    const response = await fetchWithEnv({ LIMITER: namespace }, '/v1/chat/completions', chatAs(key, chatBody(short)))
    expect(response.status).toBe(200)
    expect(observed).toEqual([true])
    expect(response.headers.get('x-ratelimit-limit-requests')).not.toBeNull()
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    expect((await limiterState(key.id)).usage.totals.admitted).toBe(2)
  })

  it('aborts the backend call of a request refused while speculating: the client sees only the 429', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 4 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    // Other isolates take every slot since: this isolate still believes 3 of 4 are free.
    const release = await holdSlots(key, 4, 4)
    const before = await emulatorStats()
    const counted = { ...proxyCounters }
    const { namespace, observed } = distantLimiter(requestsSeen, before.requests, 5_000)
    const response = await fetchWithEnv({ LIMITER: namespace }, '/v1/chat/completions', chatAs(key, chatBody(slow, { stream: true })))
    expect(observed).toEqual([true])
    expect(proxyCounters.speculativeAdmissions - counted.speculativeAdmissions).toBe(1)
    expect(proxyCounters.speculativeRefusals - counted.speculativeRefusals).toBe(1)
    expect(response.status).toBe(429)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    expect(((await response.json()) as ErrorBody).error).toMatchObject({ type: 'concurrent_streams', code: 'rate_limit_exceeded' })
    await vi.waitFor(async () => expect((await emulatorStats()).aborted).toBe(before.aborted + 1), { timeout: 2_000 })
    const after = await emulatorStats()
    expect(after.completed).toBe(before.completed)
    expect(after.inFlight).toBe(0)
    await release()
    expect((await limiterState(key.id)).usage.in_flight).toBe(0)
  })

  it.each([true, false])('writes nothing of a backend answer complete before the refusal came (stream: %s)', async (stream) => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 4 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    const release = await holdSlots(key, 4, 4)
    const before = await emulatorStats()
    // The limiter answers only once the backend has sent its whole answer (within the 1 s limiter
    // deadline, after which the request would be admitted without it: fail open).
    const { namespace, observed } = distantLimiter(async () => (await emulatorStats()).completed, before.completed, 900)
    const response = await fetchWithEnv({ LIMITER: namespace }, '/v1/chat/completions', chatAs(key, chatBody(short, { stream })))
    expect(observed).toEqual([true])
    expect(response.status).toBe(429)
    expect(response.headers.get('content-type')).toMatch(/^application\/json/)
    const text = await response.text()
    expect(text).not.toContain('data:')
    expect((JSON.parse(text) as ErrorBody).error.code).toBe('rate_limit_exceeded')
    await release()
  })

  it('waits for the answer when the last one left little headroom: a refused request never reaches the backend', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 2 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    const release = await holdSlots(key, 2, 2)
    const before = await emulatorStats()
    // Bounded wait: a backend call within it would be speculation.
    const { namespace, observed } = distantLimiter(requestsSeen, before.requests, 300)
    const response = await fetchWithEnv({ LIMITER: namespace }, '/v1/chat/completions', chatAs(key, chatBody(slow, { stream: true })))
    expect(response.status).toBe(429)
    expect(observed).toEqual([false])
    expect((await emulatorStats()).requests).toBe(before.requests)
    await release()
  })

  it('waits for every answer with SPECULATIVE_ADMISSION=off, and refuses to start with a value other than on or off', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ concurrentStreams: 8 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    const { namespace, observed } = distantLimiter(requestsSeen, (await emulatorStats()).requests, 300)
    const off = { LIMITER: namespace, SPECULATIVE_ADMISSION: 'off' }
    expect((await fetchWithEnv(off, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    expect(observed).toEqual([false])
    const bad = await fetchWithEnv({ SPECULATIVE_ADMISSION: 'maybe' }, '/v1/chat/completions', chatAs(key, chatBody(short)))
    expect(bad.status).toBe(500)
    expect(await bad.json()).toMatchObject({
      error: { code: 'gateway_misconfigured', message: expect.stringContaining('SPECULATIVE_ADMISSION') },
    })
  })

  it('keeps the limit exact when a burst speculates on a stale answer: N admitted of M, every slot given back', async () => {
    await resetEmulator()
    const key = await keyWithLimits({ requestsPerMinute: 12 })
    expect((await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))).status).toBe(200)
    // Other isolates use 8 of the 11 requests left; this isolate's answer still says 11.
    const release = await holdSlots(key, 8, 1_000)
    const before = await emulatorStats()
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody(short)))),
    )
    const statuses = responses.map((response) => response.status)
    expect(statuses.filter((status) => status === 200)).toHaveLength(3)
    expect(statuses.filter((status) => status === 429)).toHaveLength(17)
    await Promise.all(responses.map((response) => response.text()))
    await vi.waitFor(async () => expect((await emulatorStats()).inFlight).toBe(0))
    // Only the admitted ran to the end; the backend saw at most the speculative ones besides.
    const after = await emulatorStats()
    expect(after.completed - before.completed).toBe(3)
    expect(after.requests - before.requests).toBeGreaterThanOrEqual(3)
    await release()
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    expect((await limiterState(key.id)).usage.totals).toMatchObject({ admitted: 12, refused: { requests: 17 } })
  })
})
