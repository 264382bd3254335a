import { env } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { StreamSession } from '../../src/durable/stream-session.ts'
import { keyWithLimits, limiterState } from '../support/limits.ts'
import { createSession, endSessions, eventReader, openEvents, parseStream } from './helpers.ts'

// An object can restart mid-generation (a deploy, a crash): the upstream request goes with the old
// instance. The new one finds the session marked running with nothing generating it, ends it with
// an error event after the events it has, and gives the stream slot back.

afterAll(endSessions)

describe('a session whose object restarted mid-generation', () => {
  it('ends with stream_interrupted after the saved events, and settles its lease once', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const session = await createSession('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=300] Hi', { secret: key.secret })
    const reader = eventReader(await openEvents(session.url))
    for (let i = 0; i < 20; i++) await reader.next()
    // Events are saved every 250 ms; wait for a save so the new instance has some.
    await new Promise((resolve) => setTimeout(resolve, 300))
    const stub = env.STREAMS.get(env.STREAMS.idFromString(session.id))
    const text = await runInDurableObject(stub, async (_old: StreamSession, state) => {
      const restarted = new StreamSession(state, env)
      const result = await restarted.subscribe({ lastEventId: 0, origin: null, selfOrigin: 'http://gateway.test' })
      return result.kind === 'stream' ? new Response(result.body).text() : result.kind
    })
    const { events } = parseStream(text)
    expect(events.length).toBeGreaterThan(10)
    expect(events.map((event) => event.id)).toEqual(events.map((_, index) => index + 1))
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { error: { code: 'stream_interrupted' } } })
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0), { timeout: 2_000, interval: 20 })
    // The old instance still runs here (a real restart would have ended it): stop it.
    await stub.cancel()
    await reader.cancel()
    expect((await limiterState(key.id)).usage.totals.admitted).toBe(1)
  })
})
