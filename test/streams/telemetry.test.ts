import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { liveGauges } from '../../src/telemetry/counters.ts'
import { keyWithLimits, type LimitedKey } from '../support/limits.ts'
import { captureRecords, recordsOf } from '../support/telemetry.ts'
import { MODEL, emulatorUrl } from '../support/worker.ts'
import { createSession, endSessions, eventReader, openEvents, postStream, readStream } from './helpers.ts'

// A stream session leaves one request record like any chat request: first token from the backend,
// first token taken by a browser connection, decode speed, how it ended.

afterAll(endSessions)

let capture: ReturnType<typeof captureRecords>
let key: LimitedKey
const backendId = new URL(emulatorUrl).host

beforeEach(async () => {
  capture = captureRecords()
  key = await keyWithLimits({})
})
afterEach(() => capture.stop())

describe('what a stream session records', () => {
  it('times the first token from the backend and its delivery to the browser', async () => {
    const session = await createSession('[emulator ttft_ms=80 itl_ms=10 reasoning_tokens=20 content_tokens=10] Hi', { secret: key.secret })
    const { events } = await readStream(await openEvents(session.url))
    expect(events.at(-1)?.event).toBe('done')
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({
      model: MODEL,
      keyId: key.id,
      backend: backendId,
      outcome: 'ok',
      status: 200,
      attempts: 1,
      completionTokens: 32,
    })
    const { headersMs, ttftBackendMs, ttftClientMs, decodeTokensPerS } = record as Required<NonNullable<typeof record>>
    expect(ttftBackendMs).toBeGreaterThanOrEqual(80)
    expect(headersMs).toBeLessThan(ttftBackendMs as number)
    expect(ttftClientMs).toBeGreaterThanOrEqual(ttftBackendMs as number)
    expect(decodeTokensPerS).toBeGreaterThan(40)
    expect(decodeTokensPerS).toBeLessThanOrEqual(105)
  })

  it('counts the first token as delivered only when a browser took it, however late it connected', async () => {
    const session = await createSession('[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=20 content_tokens=5] Hi', { secret: key.secret })
    await new Promise((resolve) => setTimeout(resolve, 400))
    await readStream(await openEvents(session.url))
    const [record] = await recordsOf(capture, key.id)
    const { ttftBackendMs, ttftClientMs, totalMs } = record as Required<NonNullable<typeof record>>
    expect(ttftClientMs).toBeGreaterThanOrEqual(400)
    expect(ttftBackendMs).toBeLessThan((ttftClientMs as number) - 200)
    // The generation was over before the browser came: its total is measured to that end.
    expect(totalMs).toBeLessThan(ttftClientMs as number)
  })

  it('records a session nobody listened to as client_abort', async () => {
    const session = await createSession('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=300] Hi', {
      secret: key.secret,
      env: { STREAM_GRACE_MS: '200', STREAM_RETRY_MS: '100' },
    })
    const reader = eventReader(await openEvents(session.url))
    await reader.next()
    await reader.cancel()
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'client_abort', status: 200, backend: backendId })
    expect(record?.completionTokens).toBeGreaterThan(0)
    expect(record?.completionTokens).toBeLessThan(300)
  })

  it('records a refused session as refused, with its status', async () => {
    const limited = await keyWithLimits({ requestsPerMinute: 1 })
    await readStream(
      await openEvents(
        (await createSession('[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=1 content_tokens=1] Hi', { secret: limited.secret })).url,
      ),
    )
    expect((await postStream('Hi', { secret: limited.secret })).status).toBe(429)
    const records = await recordsOf(capture, limited.id, 2)
    expect(records.map((record) => [record.outcome, record.status]).sort()).toEqual([
      ['ok', 200],
      ['refused', 429],
    ])
  })

  it('counts a running generation in streamsInFlight', async () => {
    const before = liveGauges.streamsInFlight
    const session = await createSession('[emulator ttft_ms=5 itl_ms=10 reasoning_tokens=30] Hi', { secret: key.secret })
    expect(liveGauges.streamsInFlight).toBe(before + 1)
    await readStream(await openEvents(session.url))
    await vi.waitFor(() => expect(liveGauges.streamsInFlight).toBe(before))
  })
})
