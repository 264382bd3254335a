// A key whose requests keep ending with request_too_slow (poison requests: docs/fleet.md, "Sending
// a request to the fleet") is paused by its limiter (docs/rate-limits.md): its next requests get
// 429 key_paused and never reach a backend, while other keys' requests go on as before.
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { PAUSE_MS } from '../../src/limits/pause.ts'
import {
  backendRecord,
  callIn,
  clearFleet,
  FLEET_TEST_ENV,
  fleetEnv,
  fleetStats,
  fleetUrls,
  prepareFleet,
  writeFleet,
  type TestEnv,
} from '../support/fleet.ts'
import { distantLimiter, keyWithLimits, RATE_LIMIT_HEADERS, type LimitedKey } from '../support/limits.ts'
import { chatBody, fetchWithEnv } from '../support/worker.ts'

const short = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=3 content_tokens=3]'
const poison = '[emulator fault=hang] this request never gets its headers'
/** The default limits: 8 concurrent, 60 a minute. */
const POISONER_LIMITS = { concurrentStreams: 8, requestsPerMinute: 60 }

interface ErrorBody {
  error: { message: string; type: string; code: string }
}

async function chat(testEnv: TestEnv, key: LimitedKey, text: string) {
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
    body: JSON.stringify(chatBody(text)),
  })
  const body = await response.text()
  // The settlement (and so the limiter's count of the ending) is waitUntil work.
  await settled()
  return { status: response.status, headers: response.headers, body }
}

const requestsSeen = async () => (await fleetStats()).reduce((sum, stats) => sum + stats.requests, 0)

function chatAs(key: LimitedKey, text: string): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
    body: JSON.stringify(chatBody(text)),
  }
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
  // gpu-b (draining) is tried only after gpu-a: a poison request misses the deadline on both.
  await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
})

describe('a key whose requests keep being judged too slow', () => {
  it('is paused after two: its next request gets 429 key_paused without reaching a backend, while another key is served', async () => {
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', CIRCUIT_COOLDOWN_MS: '60000' })
    const poisoner = await keyWithLimits(POISONER_LIMITS)
    const other = await keyWithLimits(POISONER_LIMITS)
    for (let i = 0; i < 2; i++) {
      const slow = await chat(testEnv, poisoner, poison)
      expect(slow.status).toBe(400)
      expect((JSON.parse(slow.body) as ErrorBody).error.code).toBe('request_too_slow')
    }
    const before = await requestsSeen()
    const [paused, served] = await Promise.all([chat(testEnv, poisoner, short), chat(testEnv, other, short)])
    expect(served.status).toBe(200)
    expect(paused.status).toBe(429)
    expect((JSON.parse(paused.body) as ErrorBody).error).toEqual({
      message: expect.stringMatching(
        /^This key's requests kept missing the backends' deadlines for their own reasons \(request_too_slow\); its requests are paused for (9|10) s\.$/,
      ),
      type: 'slow_requests',
      param: null,
      code: 'key_paused',
    })
    expect(Number(paused.headers.get('retry-after'))).toBe(PAUSE_MS / 1000)
    const retryAfterMs = Number(paused.headers.get('retry-after-ms'))
    expect(retryAfterMs).toBeGreaterThan(PAUSE_MS - 3_000)
    expect(retryAfterMs).toBeLessThanOrEqual(PAUSE_MS)
    for (const header of RATE_LIMIT_HEADERS) expect(paused.headers.get(header)).not.toBeNull()
    // Only the other key's request reached a backend.
    expect((await requestsSeen()) - before).toBe(1)
  })

  it('does not start its requests speculatively once one ended slow, so a pause that begins elsewhere lets none through', async () => {
    const fleet = { ...FLEET_TEST_ENV, BACKEND_URLS: fleetUrls.join(',') }
    const poisoner = await keyWithLimits(POISONER_LIMITS)
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(poisoner.id))
    const limits = { requestsPerMinute: 60, tokensPerMinute: 1_000_000_000, concurrentStreams: 8, concurrentStreamsPerIp: null }
    // Slow endings of requests in other isolates, told to the limiter as their settlements do.
    const slowElsewhere = async (leaseId: string) => {
      expect((await limiter.admit({ leaseId, reserveTokens: 10, limits, clientIp: null })).admitted).toBe(true)
      expect(await limiter.settle(leaseId, { promptTokens: 0, completionTokens: 0 }, 'request_too_slow')).toBe(true)
    }
    await slowElsewhere('elsewhere-1')
    // This isolate's last answer admits with plenty of headroom, but says a pause may come.
    expect((await fetchWithEnv(fleet, '/v1/chat/completions', chatAs(poisoner, short))).status).toBe(200)
    await slowElsewhere('elsewhere-2')
    const before = await requestsSeen()
    const { namespace, observed: reachedFirst } = distantLimiter(requestsSeen, before, 300)
    const paused = await fetchWithEnv({ ...fleet, LIMITER: namespace }, '/v1/chat/completions', chatAs(poisoner, short))
    expect(paused.status).toBe(429)
    expect(((await paused.json()) as ErrorBody).error.code).toBe('key_paused')
    expect(reachedFirst).toEqual([false])
    expect(await requestsSeen()).toBe(before)
  })
})
