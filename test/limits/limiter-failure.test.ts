import { describe, expect, it, vi } from 'vitest'
import { proxyCounters } from '../../src/telemetry/counters.ts'
import { RATE_LIMIT_HEADERS } from '../support/limits.ts'
import { chatBody, chatInit, fetchWithEnv } from '../support/worker.ts'

// A LIMITER binding whose object cannot answer: it fails, or it never answers.
function brokenLimiter(admit: () => Promise<never>) {
  const stub = { admit, settle: () => Promise.resolve(true), status: admit }
  return { idFromName: (name: string) => ({ name }), get: () => stub }
}
const failing = brokenLimiter(() => Promise.reject(new Error('Durable Object is overloaded')))
const silent = brokenLimiter(() => new Promise<never>(() => {}))

const short = chatBody('[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=1 content_tokens=1]')

describe('when the rate limiter cannot be reached', () => {
  it('admits the request by default (fail open), without rate-limit headers, and logs and counts it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const before = proxyCounters.rateLimiterUnavailable
    try {
      const response = await fetchWithEnv({ LIMITER: failing }, '/v1/chat/completions', chatInit(short))
      expect(response.status).toBe(200)
      for (const name of RATE_LIMIT_HEADERS) expect(response.headers.get(name)).toBeNull()
      expect(proxyCounters.rateLimiterUnavailable).toBe(before + 1)
      const logged = warn.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>)
      expect(logged).toContainEqual(
        expect.objectContaining({ event: 'rate_limiter_unavailable', failureMode: 'open', keyId: 'key_0000000000000001' }),
      )
    } finally {
      warn.mockRestore()
    }
  })

  it('refuses with 503 and Retry-After when configured to fail closed', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const response = await fetchWithEnv(
        { LIMITER: failing, RATE_LIMITER_FAILURE_MODE: 'closed' },
        '/v1/chat/completions',
        chatInit(short),
      )
      expect(response.status).toBe(503)
      expect(response.headers.get('retry-after')).toBe('1')
      expect(await response.json()).toMatchObject({ error: { code: 'rate_limiter_unavailable', type: 'server_error' } })
    } finally {
      warn.mockRestore()
    }
  })

  it('stops waiting after RATE_LIMITER_TIMEOUT_MS instead of hanging', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      const startedAt = Date.now()
      const response = await fetchWithEnv(
        { LIMITER: silent, RATE_LIMITER_TIMEOUT_MS: '100', RATE_LIMITER_FAILURE_MODE: 'closed' },
        '/v1/chat/completions',
        chatInit(short),
      )
      expect(response.status).toBe(503)
      expect(Date.now() - startedAt).toBeLessThan(2_000)
      expect(warn.mock.calls.map(([line]) => String(line)).join('\n')).toContain('"error":"LimiterTimeout"')
    } finally {
      warn.mockRestore()
    }
  })

  it('gives back a lease whose admission arrives after the deadline', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const settled: string[] = []
    const view = { requests: { limit: 1, remaining: 0, resetMs: 1 }, tokens: { limit: 1, remaining: 0, resetMs: 1 } }
    const stub = {
      admit: (input: { leaseId: string }) => new Promise((resolve) => setTimeout(() => resolve({ admitted: true, view, input }), 150)),
      settle: (leaseId: string) => Promise.resolve(settled.push(leaseId) > 0),
    }
    const late = { idFromName: () => ({}), get: () => stub }
    try {
      const response = await fetchWithEnv({ LIMITER: late, RATE_LIMITER_TIMEOUT_MS: '100' }, '/v1/chat/completions', chatInit(short))
      expect(response.status).toBe(200)
      // fetchWithEnv waited for the request's waitUntil work: the late lease is settled already.
      expect(settled).toHaveLength(1)
    } finally {
      warn.mockRestore()
    }
  })

  it('answers 500 with the reason when the failure mode is misconfigured', async () => {
    const response = await fetchWithEnv({ RATE_LIMITER_FAILURE_MODE: 'sometimes' }, '/v1/chat/completions', chatInit(short))
    expect(response.status).toBe(500)
    expect(await response.json()).toMatchObject({
      error: { code: 'gateway_misconfigured', message: expect.stringContaining('RATE_LIMITER_FAILURE_MODE') },
    })
  })

  it('skips admission entirely with RATE_LIMITS=off', async () => {
    const response = await fetchWithEnv({ LIMITER: failing, RATE_LIMITS: 'off' }, '/v1/chat/completions', chatInit(short))
    expect(response.status).toBe(200)
    expect(response.headers.get('x-ratelimit-limit-requests')).toBeNull()
  })
})
