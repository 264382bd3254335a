import { env, exports } from 'cloudflare:workers'
import { Hono } from 'hono'
import { requestId } from 'hono/request-id'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/middleware/config.ts'
import type { AppEnv } from '../../src/env.ts'
import { renderError } from '../../src/errors.ts'
import { admitRequest } from '../../src/limits/admit.ts'
import { requireKey } from '../../src/middleware/auth.ts'
import { keyWithLimits, limiterState } from '../support/limits.ts'

// Browser streams authenticate with a stream token minted by a key. The browser streaming route
// arrives with the stream-session issue; this app stands in for it with the same middleware and
// the same admission, holding each admitted slot (never settled) to count them.
const browserRoute = new Hono<AppEnv>()
browserRoute.use(requestId())
browserRoute.use(loadConfig)
browserRoute.get('/hold', requireKey({ scope: 'chat', acceptStreamToken: true }), async (c) => {
  await admitRequest(c, 10)
  return c.json({ admitted: true })
})
browserRoute.onError(renderError)

async function mintToken(secret: string): Promise<string> {
  const response = await exports.default.fetch('http://gateway.test/v1/stream-tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: '{}',
  })
  return ((await response.json()) as { token: string }).token
}

function holdFrom(token: string, ip: string) {
  const request = new Request(`http://gateway.test/hold?token=${token}`, { headers: { 'cf-connecting-ip': ip } })
  return browserRoute.fetch(request, { ...env, CONCURRENT_STREAMS_PER_IP: '2' }, { waitUntil() {}, passThroughOnException() {}, props: {} })
}

describe('browser streams (stream tokens)', () => {
  it('count against the key that minted the token, and each client IP has its own concurrency limit', async () => {
    const key = await keyWithLimits({ concurrentStreams: 5 })
    const token = await mintToken(key.secret)
    const statuses = []
    for (const ip of ['203.0.113.7', '203.0.113.7', '203.0.113.7', '203.0.113.8']) statuses.push((await holdFrom(token, ip)).status)
    expect(statuses).toEqual([200, 200, 429, 200])
    const refused = await holdFrom(token, '203.0.113.7')
    expect(await refused.json()).toMatchObject({ error: { type: 'concurrent_streams_per_ip', code: 'rate_limit_exceeded' } })
    const { usage } = await limiterState(key.id)
    expect(usage.in_flight).toBe(3)
    expect(usage.totals.refused.concurrent_streams_per_ip).toBe(2)
  })
})
