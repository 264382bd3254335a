import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { keyWithLimits, type LimitedKey } from '../support/limits.ts'
import { readUntil } from '../support/sse.ts'
import { captureRecords, recordsOf } from '../support/telemetry.ts'
import { MODEL, chatBody, emulatorUrl, postChat } from '../support/worker.ts'

// Every chat request leaves one record, however it ends, with the timings that make up its
// first-token latency. The records are watched where the aggregator receives them.

let capture: ReturnType<typeof captureRecords>
let key: LimitedKey
const backendId = new URL(emulatorUrl).host

beforeEach(async () => {
  capture = captureRecords()
  key = await keyWithLimits({})
})
afterEach(() => capture.stop())

describe('what a chat request records', () => {
  it('times a streamed answer: headers, first token from the backend, first token taken by the client, decode speed', async () => {
    const response = await postChat(chatBody('[emulator ttft_ms=80 itl_ms=10 reasoning_tokens=20 content_tokens=10]', { stream: true }), {
      secret: key.secret,
    })
    const text = await response.text()
    expect(text).toContain('data: [DONE]')
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({
      model: MODEL,
      keyId: key.id,
      backend: backendId,
      outcome: 'ok',
      status: 200,
      attempts: 1,
      completionTokens: 32,
      // A fleet with free slots: no wait at the edge.
      edgeWaitMs: 0,
    })
    const { headersMs, ttftBackendMs, ttftClientMs, totalMs, decodeTokensPerS } = record as Required<NonNullable<typeof record>>
    // The emulator waits 80 ms before the first token; headers go out when the backend accepts.
    expect(ttftBackendMs).toBeGreaterThanOrEqual(80)
    expect(headersMs).toBeLessThan(ttftBackendMs as number)
    expect(ttftClientMs).toBeGreaterThanOrEqual(ttftBackendMs as number)
    expect(totalMs).toBeGreaterThanOrEqual((ttftClientMs as number) + 31 * 10 - 20)
    // One token per 10 ms after the first: at most 100 tokens/s, and not far below on loopback.
    expect(decodeTokensPerS).toBeGreaterThan(40)
    expect(decodeTokensPerS).toBeLessThanOrEqual(105)
  })

  it('times a non-streamed answer, delivered with its response', async () => {
    const response = await postChat(chatBody('[emulator ttft_ms=50 itl_ms=2]'), { secret: key.secret })
    expect(response.status).toBe(200)
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'ok', status: 200, attempts: 1, backend: backendId })
    expect(record?.ttftBackendMs).toBeGreaterThanOrEqual(50)
    expect(record?.ttftClientMs).toBe(record?.totalMs)
  })

  it('records a client that leaves mid-stream as client_abort, after the stream ended', async () => {
    const controller = new AbortController()
    const response = await postChat(chatBody('[emulator ttft_ms=5 itl_ms=20 reasoning_tokens=200]', { stream: true }), {
      secret: key.secret,
      signal: controller.signal,
    })
    const reader = (response.body as ReadableStream<Uint8Array>).getReader()
    await readUntil(reader, (seen) => seen.includes('reasoning_content'))
    controller.abort()
    await reader.cancel().catch(() => {})
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'client_abort', status: 200, backend: backendId })
    expect(record?.ttftBackendMs).not.toBeNull()
    expect(record?.completionTokens).toBeLessThan(200)
  })

  it('records a backend that fails mid-stream as upstream_error', async () => {
    const response = await postChat(chatBody('[emulator fault=error_after:3]', { stream: true }), { secret: key.secret })
    expect(await response.text()).toContain('"error"')
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'upstream_error', backend: backendId, attempts: 1 })
  })

  it('records a backend refusal with its status', async () => {
    const response = await postChat(chatBody('[emulator fault=refuse:400]', { stream: true }), { secret: key.secret })
    expect(response.status).toBe(400)
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'upstream_error', status: 400, backend: backendId, ttftBackendMs: null })
  })

  it('records what the gateway refused (invalid body, rate limit) without a backend', async () => {
    const limited = await keyWithLimits({ requestsPerMinute: 1 })
    expect((await postChat({ model: MODEL, messages: 'nope' }, { secret: limited.secret })).status).toBe(400)
    expect((await postChat(chatBody('hi'), { secret: limited.secret })).status).toBe(200)
    expect((await postChat(chatBody('hi'), { secret: limited.secret })).status).toBe(429)
    const records = await recordsOf(capture, limited.id, 3)
    expect(records.map((r) => [r.outcome, r.status, r.backend, r.attempts])).toEqual([
      ['refused', 400, null, 0],
      ['ok', 200, backendId, 1],
      ['refused', 429, null, 0],
    ])
  })

  it('counts responses by route pattern and status, for every route', async () => {
    await postChat(chatBody('hi'), { secret: key.secret })
    await recordsOf(capture, key.id)
    const counted = capture.batches.flatMap((batch) => Object.keys(batch.responses))
    expect(counted).toContain('/v1/chat/completions 200')
  })
})
