// The response-headers deadline (UPSTREAM_HEADERS_TIMEOUT_MS) in the Worker against real emulator
// backends: a backend that accepts the connection and never answers (the emulator's `hang` fault,
// as a process stopped with SIGSTOP behaves) costs a request the headers deadline, not the
// first-event one, and once another backend answered what it missed, it is ejected. A request that
// is slow for its own reasons (a poison request) is not carried from backend to backend, and ejects
// nobody.
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { UpstreamCall } from '../../src/dispatch/upstream-call.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { keyWithLimits, type LimitedKey } from '../support/limits.ts'
import { captureRecords, recordsOf } from '../support/telemetry.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetStats, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { chatBody } from '../support/worker.ts'

const short = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=3 content_tokens=3]'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function init(body: unknown, secret = TEST_SECRET): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
    body: JSON.stringify(body),
  }
}

async function chat(testEnv: TestEnv) {
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', init(chatBody(short)))
  const body = await response.text()
  await settled()
  return { status: response.status, body }
}

/** gpu-a never answers; gpu-b (draining, so tried only after gpu-a) serves. */
async function frozenFirst(): Promise<void> {
  await prepareFleet({ 0: 'hang' })
  await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
})

describe('UpstreamCall headers deadline', () => {
  it('stops the call with headers_timeout when no response headers came in time (no verdict asked: the backend is blamed)', async () => {
    const call = new UpstreamCall(undefined, { headersMs: 20, firstEventMs: 60_000, idleMs: 60_000 })
    await new Promise((resolve) => call.signal.addEventListener('abort', resolve))
    expect(call.stopReason).toBe('headers_timeout')
    expect(call.missedDeadline).toBe(true)
    expect(call.stopError()).toMatchObject({
      status: 504,
      code: 'upstream_timeout',
      message: 'The backend sent no response headers within 20 ms.',
    })
  })

  it('leaves only the first-event deadline once the headers arrived', async () => {
    const call = new UpstreamCall(undefined, { headersMs: 20, firstEventMs: 150, idleMs: 60_000 })
    call.headersArrived()
    await new Promise((resolve) => call.signal.addEventListener('abort', resolve))
    expect(call.stopReason).toBe('first_event_timeout')
  })
})

describe('a backend that accepts and never answers', () => {
  it('fails the request over to the next backend at the headers deadline, long before the first-event one', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', FIRST_EVENT_TIMEOUT_MS: '60000', CIRCUIT_COOLDOWN_MS: '60000' })
    const answer = await chat(testEnv)
    expect(answer.status).toBe(200)
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(1)
    expect(b?.completed).toBe(1)
  })

  it('ejects it once another backend answered the request it missed: later requests go straight to the next backend', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', CIRCUIT_CONSECUTIVE_FAILURES: '5', CIRCUIT_COOLDOWN_MS: '60000' })
    for (let i = 0; i < 6; i++) expect((await chat(testEnv)).status).toBe(200)
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(1)
    expect(b?.completed).toBe(6)
  })

  it('takes it back after the cool-down with no probe request deciding it, and ejects it again on the next such miss', async () => {
    await frozenFirst()
    const cooldownMs = 1_000
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', CIRCUIT_COOLDOWN_MS: String(cooldownMs) })
    expect((await chat(testEnv)).status).toBe(200)
    // The first request ejected it, at the latest now: the cool-down ends by ejectedBy + cooldownMs.
    const ejectedBy = Date.now()
    for (let i = 0; i < 2; i++) expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.requests).toBe(1)
    await sleep(ejectedBy + cooldownMs + 200 - Date.now())
    for (let i = 0; i < 3; i++) expect((await chat(testEnv)).status).toBe(200)
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(2)
    expect(b?.completed).toBe(6)
  })

  it('is tried after every other backend while a request there waits for headers past a third of the deadline', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '1800', CIRCUIT_COOLDOWN_MS: '60000' })
    const waiting = chat(testEnv)
    for (let i = 0; i < 100 && (await fleetStats())[0]?.inFlight !== 1; i++) await sleep(20)
    expect((await fleetStats())[0]?.inFlight).toBe(1)
    // Past the stall threshold (600 ms, counted from before the backend saw it), well before the deadline (1800 ms).
    await sleep(900)
    expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.requests).toBe(1)
    expect((await waiting).status).toBe(200)
  })
})

describe('a request that is slow for its own reasons (a poison request)', () => {
  const poison = chatBody('[emulator fault=hang] this request never gets its headers')
  // Poison requests are sent with a key of their own: two request_too_slow endings within a minute
  // pause a key (docs/rate-limits.md), and the test key's requests must go on.
  let poisoner: LimitedKey
  beforeEach(async () => {
    poisoner = await keyWithLimits({})
  })
  // A poison request takes up to two headers deadlines, each followed by a /health check of at most
  // half of one: 600 ms here. That must end well before the 200 is committed anyway
  // (COMMIT_WITHIN_MS, 1 s), or the 400 becomes an error after a 200: at 300 ms (900 ms in all) a
  // loaded 2-core machine crossed it.
  const POISON_HEADERS_TIMEOUT_MS = '200'

  it('ends with 400 request_too_slow at once, without trying another backend, when its backend answered a newer request meanwhile', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    // Stalled (so ranked last) after a third of the deadline: the newer request is sent well before.
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '750', CIRCUIT_COOLDOWN_MS: '60000' })
    const poisoned = callIn(testEnv, '/v1/chat/completions', init(poison, poisoner.secret))
    for (let i = 0; i < 100 && (await fleetStats())[0]?.inFlight !== 1; i++) await sleep(10)
    // Sent after the poison, to the same backend, and answered: the backend is alive.
    expect((await chat(testEnv)).status).toBe(200)
    const { response, settled } = await poisoned
    const body = (await response.json()) as { error: { code: string; message: string } }
    await settled()
    expect(response.status).toBe(400)
    expect(body.error.code).toBe('request_too_slow')
    expect(body.error.message).toContain('not retried on another backend')
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(2)
    expect(b?.requests).toBe(0)
    // Nobody was ejected: the next request still goes to the first backend.
    expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.completed).toBe(2)
  })

  it('tries one other backend when nothing explains the miss, then ends with request_too_slow, ejecting neither', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: POISON_HEADERS_TIMEOUT_MS, CIRCUIT_COOLDOWN_MS: '60000' })
    const capture = captureRecords()
    const { response, settled } = await callIn(testEnv, '/v1/chat/completions', init(poison, poisoner.secret))
    const body = (await response.json()) as { error: { code: string } }
    await settled()
    expect(response.status).toBe(400)
    expect(body.error.code).toBe('request_too_slow')
    // Its record says why it ended, in the one vocabulary of src/ending.ts.
    const [record] = await recordsOf(capture, poisoner.id)
    capture.stop()
    expect(record).toMatchObject({ reason: 'request_too_slow', outcome: 'upstream_error', attempts: 2, status: 400 })
    expect((await fleetStats()).map((stats) => stats.requests)).toEqual([1, 1, 0])
    expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.completed).toBe(1)
  })

  it('cannot take the fleet down: after poison requests on every backend, every other request still succeeds', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0), backendRecord(1), backendRecord(2)])
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: POISON_HEADERS_TIMEOUT_MS, CIRCUIT_COOLDOWN_MS: '60000' })
    const poisoned = await Promise.all(
      Array.from({ length: 3 }, () =>
        callIn(testEnv, '/v1/chat/completions', init(poison, poisoner.secret)).then(({ response }) => response.status),
      ),
    )
    expect(poisoned).toEqual([400, 400, 400])
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await chat(testEnv)).status)
    expect(statuses).toEqual([200, 200, 200, 200, 200, 200])
  })
})
