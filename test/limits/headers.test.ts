import { describe, expect, it } from 'vitest'
import { formatResetDuration, rateLimitHeaders, retryAfterHeaders } from '../../src/limits/headers.ts'

describe('formatResetDuration', () => {
  it.each([
    [0, '0ms'],
    [17, '17ms'],
    [999, '999ms'],
    [999.2, '1s'],
    [1_000, '1s'],
    [8_640, '8.64s'],
    [8_500, '8.5s'],
    [59_999, '1m0s'],
    [8_641, '8.65s'],
    [60_000, '1m0s'],
    [360_000, '6m0s'],
    [90_500, '1m30.5s'],
    [3_723_000, '1h2m3s'],
    [-5, '0ms'],
  ])('writes %d ms as %s, the form OpenAI uses', (ms, text) => {
    expect(formatResetDuration(ms)).toBe(text)
  })
})

describe('rate-limit headers', () => {
  it('names the six x-ratelimit headers with their values', () => {
    const view = { requests: { limit: 10, remaining: 3, resetMs: 6_000 }, tokens: { limit: 1_000, remaining: 250, resetMs: 450 } }
    expect(rateLimitHeaders(view)).toEqual({
      'x-ratelimit-limit-requests': '10',
      'x-ratelimit-remaining-requests': '3',
      'x-ratelimit-reset-requests': '6s',
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '250',
      'x-ratelimit-reset-tokens': '450ms',
    })
  })

  it('rounds Retry-After up to whole seconds, at least 1, and keeps the exact wait in retry-after-ms', () => {
    expect(retryAfterHeaders(1_200)).toEqual({ 'retry-after': '2', 'retry-after-ms': '1200' })
    expect(retryAfterHeaders(0)).toEqual({ 'retry-after': '1', 'retry-after-ms': '1' })
  })
})
