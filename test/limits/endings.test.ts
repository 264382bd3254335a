import { env } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import { describe, expect, it, vi } from 'vitest'
import { FLUSH_MS, KeyLimiter } from '../../src/durable/key-limiter.ts'
import { keyWithLimits, limiterState, type LimitedKey } from '../support/limits.ts'
import { chatBody, fetchWithEnv } from '../support/worker.ts'

// A stream slot comes back however the request ends before it streams: a backend refusal, an
// unreachable backend, a backend that never answers, or an exception thrown inside the Worker.

function chatAs(key: LimitedKey, body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.secret}` },
    body: JSON.stringify(body),
  }
}

async function expectSlotBack(key: LimitedKey): Promise<void> {
  await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
  expect((await limiterState(key.id)).usage.totals).toMatchObject({ admitted: 1, prompt_tokens: 0, completion_tokens: 0 })
}

describe('a stream slot is given back when the request fails', () => {
  it('after the backend refuses the request', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const response = await fetchWithEnv({}, '/v1/chat/completions', chatAs(key, chatBody('[emulator fault=refuse:503]', { stream: true })))
    expect(response.status).toBe(503)
    await expectSlotBack(key)
  })

  it('after the backend cannot be reached', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const response = await fetchWithEnv(
      { BACKEND_URLS: 'http://127.0.0.1:9' },
      '/v1/chat/completions',
      chatAs(key, chatBody('hi', { stream: true })),
    )
    expect(response.status).toBe(502)
    await expectSlotBack(key)
  })

  it('after the first-event deadline passes', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const response = await fetchWithEnv(
      { FIRST_EVENT_TIMEOUT_MS: '200' },
      '/v1/chat/completions',
      chatAs(key, chatBody('[emulator fault=hang]', { stream: true })),
    )
    expect(response.status).toBe(504)
    await expectSlotBack(key)
  })

  it('after an exception inside the Worker', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const init = chatAs(key, chatBody('hi'))
    // Hashing the conversation prefix for routing throws: a plain bug, after admission.
    const random = vi.spyOn(Math, 'imul').mockImplementationOnce(() => {
      throw new TypeError('a bug')
    })
    try {
      const response = await fetchWithEnv({}, '/v1/chat/completions', init)
      expect(response.status).toBe(500)
    } finally {
      random.mockRestore()
    }
    await expectSlotBack(key)
  })
})

describe('the key limiter', () => {
  it('keeps its window and in-flight leases in storage: an object restarted on it carries on', async () => {
    const key = await keyWithLimits({ requestsPerMinute: 2 })
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    const limits = { requestsPerMinute: 2, tokensPerMinute: 1_000, concurrentStreams: 5, concurrentStreamsPerIp: null }
    await limiter.admit({ leaseId: 'held', reserveTokens: 10, limits, clientIp: null })
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 100))
    const restarted = await runInDurableObject(limiter, (_instance: KeyLimiter, state) => {
      const fresh = new KeyLimiter(state, env)
      return {
        status: fresh.status(limits),
        again: fresh.admit({ leaseId: 'next', reserveTokens: 10, limits, clientIp: null }),
        settled: fresh.settle('held', { promptTokens: 3, completionTokens: 4 }),
      }
    })
    expect(restarted.status).toMatchObject({ inFlight: 1, view: { requests: { remaining: 1 }, tokens: { remaining: 990 } } })
    expect(restarted.again.admitted).toBe(true)
    expect(restarted.settled).toBe(true)
  })
})
