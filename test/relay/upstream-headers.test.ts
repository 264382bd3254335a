// The response-headers deadline (UPSTREAM_HEADERS_TIMEOUT_MS) in the Worker against real emulator
// backends: a backend that accepts the connection and never answers (the emulator's `hang` fault,
// as a process stopped with SIGSTOP behaves) costs a request the headers deadline, not the
// first-event one, and after a few such misses its circuit keeps new requests away.
import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { UpstreamCall } from '../../src/relay/upstream-call.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetStats, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { chatBody } from '../support/worker.ts'

const short = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=3 content_tokens=3]'
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function init(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
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
  it('stops the call with headers_timeout when no response headers came in time', async () => {
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

  it('opens its circuit after two missed headers deadlines: later requests go straight to the next backend', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', CIRCUIT_CONSECUTIVE_FAILURES: '5', CIRCUIT_COOLDOWN_MS: '60000' })
    for (let i = 0; i < 6; i++) expect((await chat(testEnv)).status).toBe(200)
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(2)
    expect(b?.completed).toBe(6)
  })

  it('is probed with one request after the cool-down, which fails over too, and the circuit opens again', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '300', CIRCUIT_COOLDOWN_MS: '1500' })
    for (let i = 0; i < 3; i++) expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.requests).toBe(2)
    await sleep(1_800)
    for (let i = 0; i < 3; i++) expect((await chat(testEnv)).status).toBe(200)
    const [a, b] = await fleetStats()
    expect(a?.requests).toBe(3)
    expect(b?.completed).toBe(6)
  })

  it('is tried after every other backend while a request there waits for headers past a third of the deadline', async () => {
    await frozenFirst()
    const testEnv = fleetEnv({ UPSTREAM_HEADERS_TIMEOUT_MS: '3000', CIRCUIT_COOLDOWN_MS: '60000' })
    const waiting = chat(testEnv)
    for (let i = 0; i < 100 && (await fleetStats())[0]?.inFlight !== 1; i++) await sleep(20)
    expect((await fleetStats())[0]?.inFlight).toBe(1)
    // Past the stall threshold (1000 ms), before the deadline (3000 ms).
    await sleep(1_500)
    expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.requests).toBe(1)
    expect((await waiting).status).toBe(200)
  })
})
