import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { keyWithLimits, limiterState, type LimitedKey } from '../support/limits.ts'
import { captureRecords, recordsOf } from '../support/telemetry.ts'
import { MODEL, callWorker, emulatorUrl } from '../support/worker.ts'

// A Responses request is a chat request underneath: the same key limits (admission, settled
// tokens, 429) and the same request record in the telemetry.

let capture: ReturnType<typeof captureRecords>
const backendId = new URL(emulatorUrl).host

beforeEach(() => {
  capture = captureRecords()
})
afterEach(() => capture.stop())

function postResponses(key: LimitedKey, body: unknown) {
  return callWorker('/v1/responses', {
    method: 'POST',
    headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
}

describe('a Responses request on the chat path', () => {
  it('leaves one request record, with the tokens the backend generated', async () => {
    const key = await keyWithLimits({})
    const response = await postResponses(key, { input: '[emulator reasoning_tokens=20 content_tokens=10] Hi', stream: true })
    expect(await response.text()).toContain('event: response.completed')
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ model: MODEL, backend: backendId, outcome: 'ok', status: 200, attempts: 1, completionTokens: 32 })
    expect(record?.ttftClientMs).toBeGreaterThanOrEqual(record?.ttftBackendMs ?? Number.POSITIVE_INFINITY)
  })

  it('records a refused request as refused, with its 400', async () => {
    const key = await keyWithLimits({})
    expect((await postResponses(key, { input: 'Hi', background: true })).status).toBe(400)
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ outcome: 'refused', status: 400, attempts: 0 })
  })

  it("settles the generated tokens against the key's limit and answers 429 over the request limit", async () => {
    const key = await keyWithLimits({ requestsPerMinute: 1 })
    const first = await postResponses(key, { input: '[emulator reasoning_tokens=4 content_tokens=3] Hi' })
    expect(first.status).toBe(200)
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    const usage = ((await first.json()) as { usage: { output_tokens: number } }).usage
    const refused = await postResponses(key, { input: 'Hi' })
    expect(refused.status).toBe(429)
    expect(await refused.json()).toMatchObject({ error: { code: 'rate_limit_exceeded' } })
    const state = await limiterState(key.id)
    expect(state.usage.totals.completion_tokens).toBe(usage.output_tokens)
  })
})
