import { runDurableObjectAlarm } from 'cloudflare:test'
import { env, exports } from 'cloudflare:workers'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { keyWithLimits, limiterState, type LimitedKey } from '../support/limits.ts'
import { emulatorStats } from '../support/worker.ts'
import { createSession, endSessions, eventReader, openEvents, postStream, readStream, type SessionEvent } from './helpers.ts'

// Every way a session's generation ends stops the backend (no GPU time for nobody), tells any
// listener why with one final event, and gives the key's stream slot back exactly once.

afterAll(endSessions)

/** About 10 s of generation: it only ends early if the session stops it. */
const LONG = '[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=500] Tell me about oceans.'
const GRACE = { STREAM_GRACE_MS: '300', STREAM_RETRY_MS: '100' }

async function abortedSoFar(): Promise<number> {
  return (await emulatorStats()).aborted
}

async function expectBackendAborted(before: number): Promise<void> {
  await vi.waitFor(async () => expect(await abortedSoFar()).toBe(before + 1), { timeout: 2_000, interval: 20 })
}

async function expectSlotBack(key: LimitedKey): Promise<void> {
  await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0), { timeout: 2_000, interval: 20 })
}

async function finalEvent(url: string): Promise<SessionEvent | undefined> {
  return (await readStream(await openEvents(url))).events.at(-1)
}

describe('a session nobody listens to', () => {
  it('stops the generation after the grace period when no browser ever connects, and settles the lease', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const before = await abortedSoFar()
    const session = await createSession(LONG, { secret: key.secret, env: GRACE })
    expect((await limiterState(key.id)).usage.in_flight).toBe(1)
    await expectBackendAborted(before)
    await expectSlotBack(key)
    const final = await finalEvent(session.url)
    expect(final).toMatchObject({ event: 'error', data: { error: { code: 'stream_abandoned' } } })
    const next = await postStream(LONG, { secret: key.secret, env: GRACE })
    expect(next.status).toBe(201)
    // Not left running for the next test to count.
    await postCancel(((await next.json()) as { url: string }).url.replace('/events?', '/cancel?'))
    await expectBackendAborted(before + 1)
  })

  it('stops the generation after the grace period when the last browser leaves', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const before = await abortedSoFar()
    const session = await createSession(LONG, { secret: key.secret, env: GRACE })
    const reader = eventReader(await openEvents(session.url))
    for (let i = 0; i < 3; i++) await reader.next()
    await reader.cancel()
    const leftAt = Date.now()
    await expectBackendAborted(before)
    expect(Date.now() - leftAt).toBeGreaterThanOrEqual(250)
    await expectSlotBack(key)
  })

  it('keeps generating for a browser that reconnects within the grace period', async () => {
    const before = await emulatorStats()
    const session = await createSession('[emulator ttft_ms=5 itl_ms=10 reasoning_tokens=40 content_tokens=10] Hi', {
      env: { STREAM_GRACE_MS: '1000', STREAM_RETRY_MS: '100' },
    })
    const reader = eventReader(await openEvents(session.url))
    for (let i = 0; i < 3; i++) await reader.next()
    await reader.cancel()
    await new Promise((resolve) => setTimeout(resolve, 200))
    const rest = await readStream(await openEvents(session.url, { lastEventId: 3 }))
    expect(rest.events[0]?.id).toBe(4)
    expect(rest.events.at(-1)?.event).toBe('done')
    const after = await emulatorStats()
    expect(after.aborted).toBe(before.aborted)
    expect(after.completed).toBe(before.completed + 1)
  })
})

describe('a session that is stopped', () => {
  it('stops at once when cancelled with its URL, and ends its stream with stream_cancelled', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const before = await abortedSoFar()
    const session = await createSession(LONG, { secret: key.secret })
    const reader = eventReader(await openEvents(session.url))
    await reader.next()
    const cancelUrl = session.url.replace('/events?', '/cancel?')
    expect((await postCancel(cancelUrl.replace(/sig=./, 'sig=_'))).status).toBe(401)
    const cancelled = await postCancel(cancelUrl)
    expect(await cancelled.json()).toEqual({ object: 'stream_session', id: session.id, cancelled: true })
    let last: SessionEvent | null = null
    for (let event = await reader.next(); event; event = await reader.next()) last = event
    expect(last).toMatchObject({ event: 'error', data: { error: { code: 'stream_cancelled' } } })
    await expectBackendAborted(before)
    await expectSlotBack(key)
    expect(await (await postCancel(cancelUrl)).json()).toMatchObject({ cancelled: false })
  })

  it('is stopped at its lifetime cap by its alarm', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const before = await abortedSoFar()
    const session = await createSession(LONG, { secret: key.secret })
    const reader = eventReader(await openEvents(session.url))
    await reader.next()
    expect(await runDurableObjectAlarm(env.STREAMS.get(env.STREAMS.idFromString(session.id)))).toBe(true)
    let last: SessionEvent | null = null
    for (let event = await reader.next(); event; event = await reader.next()) last = event
    expect(last).toMatchObject({ event: 'error', data: { error: { code: 'stream_lifetime_exceeded', type: 'timeout_error' } } })
    await expectBackendAborted(before)
    await expectSlotBack(key)
  })
})

describe('a session whose backend fails', () => {
  it('answers the POST with the backend refusal, holding nothing', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const response = await postStream('[emulator fault=refuse:503] Hi', { secret: key.secret })
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ error: { type: 'server_error' } })
    await expectSlotBack(key)
  })

  it('ends with an error event when the backend dies mid-stream, charging what it reported', async () => {
    const key = await keyWithLimits({ concurrentStreams: 1 })
    const session = await createSession('[emulator ttft_ms=5 itl_ms=2 fault=die_after:4] Hi', { secret: key.secret })
    const { events } = await readStream(await openEvents(session.url))
    expect(events.filter((event) => event.event === 'reasoning')).toHaveLength(4)
    expect(events.at(-1)).toMatchObject({ event: 'error', data: { error: { code: 'upstream_connection_lost', type: 'server_error' } } })
    await expectSlotBack(key)
    expect((await limiterState(key.id)).usage.totals.completion_tokens).toBeGreaterThanOrEqual(3)
  })

  it("ends with the backend's own error event when it sends one mid-stream", async () => {
    const session = await createSession('[emulator ttft_ms=5 itl_ms=2 fault=error_after:3] Hi')
    const final = await finalEvent(session.url)
    expect(final).toMatchObject({ event: 'error', data: { error: { code: 'upstream_error' } } })
  })
})

function postCancel(url: string): Promise<Response> {
  return exports.default.fetch(url, { method: 'POST' })
}
