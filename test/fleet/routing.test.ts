import { env } from 'cloudflare:workers'
import { beforeEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetStats, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { chatBody } from '../support/worker.ts'
import { frames, readAll } from '../support/sse.ts'

const short = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=3 content_tokens=3]'
const dead = { id: 'gpu-dead', url: 'http://127.0.0.1:9', weight: 1, maxConcurrency: 64, region: null, state: 'active' as const }

function init(body: unknown): RequestInit {
  return {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
    body: JSON.stringify(body),
  }
}

async function chat(testEnv: TestEnv, stream = false, text = short) {
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', init(chatBody(text, { stream })))
  const body = await response.text()
  await settled()
  return { status: response.status, headers: response.headers, body }
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
})

describe('failover before the first data event', () => {
  it.each([
    ['the backend cannot be reached', null],
    ['the backend answers 503', 'refuse:503'],
    ['the backend answers 429', 'refuse:429'],
  ])('moves the request to the next backend when %s', async (_, fault) => {
    await prepareFleet(fault ? { 0: fault } : {})
    const first = fault ? backendRecord(0) : dead
    await writeFleet([first, backendRecord(1, { state: 'draining' })])
    for (const stream of [false, true]) {
      const answer = await chat(fleetEnv(), stream)
      expect(answer.status).toBe(200)
      if (stream) expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    }
    const [a, b] = await fleetStats()
    expect(b?.completed).toBe(2)
    if (fault) expect(a?.completed).toBe(0)
  })

  it('moves on when a backend sends no first event within the deadline', async () => {
    await prepareFleet({ 0: 'hang' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const answer = await chat(fleetEnv({ FIRST_EVENT_TIMEOUT_MS: '300' }), true)
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.completed).toBe(1)
  })

  it('moves on after keep-alive comments, which are not data: the client sees one clean stream', async () => {
    await prepareFleet({ 0: 'stall_after:0' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const answer = await chat(fleetEnv({ FIRST_EVENT_TIMEOUT_MS: '400', KEEPALIVE_INTERVAL_MS: '100' }), true)
    const sent = frames(answer.body)
    expect(sent[0]).toBe(': keep-alive')
    expect(sent.filter((frame) => frame.startsWith('data: {"error"'))).toEqual([])
    expect(sent.at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.completed).toBe(1)
  })

  it('moves on when the backend accepts and then dies before any data', async () => {
    await prepareFleet({ 0: 'die_after:0' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const answer = await chat(fleetEnv(), true)
    expect(frames(answer.body).filter((frame) => frame.includes('"error"'))).toEqual([])
    expect((await fleetStats())[1]?.completed).toBe(1)
  })

  it("moves on when the engine dies before the first token, which vLLM v0.11.0 sends as a 400 error event, and counts it against the backend's circuit", async () => {
    await prepareFleet({ 0: 'error_after:0' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const testEnv = fleetEnv()
    for (const stream of [true, false, true, false, true]) {
      const answer = await chat(testEnv, stream)
      expect(answer.status).toBe(200)
      expect(answer.body).not.toContain('EngineCore')
    }
    const [a, b] = await fleetStats()
    // Three failures opened gpu-a's circuit: the last two requests went to gpu-b directly.
    expect(a?.requests).toBe(3)
    expect(b?.completed).toBe(5)
  })

  it('never fails over once a data event reached the client: the stream ends with an error event', async () => {
    await prepareFleet({ 0: 'die_after:2' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const sent = frames((await chat(fleetEnv(), true)).body)
    expect(sent.at(-2)).toContain('"code": 502')
    expect(sent.at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.requests).toBe(0)
  })

  it("passes a backend's 4xx refusal straight back: the request is at fault, not the backend", async () => {
    await prepareFleet({ 0: 'refuse:400' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    expect((await chat(fleetEnv())).status).toBe(400)
    expect((await fleetStats())[1]?.requests).toBe(0)
  })

  it('tries at most FAILOVER_ATTEMPTS backends', async () => {
    await prepareFleet({ 0: 'refuse:503', 1: 'refuse:503' })
    await writeFleet([backendRecord(0), backendRecord(1), backendRecord(2, { state: 'draining' })])
    expect((await chat(fleetEnv({ FAILOVER_ATTEMPTS: '2' }))).status).toBe(503)
    expect((await fleetStats())[2]?.requests).toBe(0)
    expect((await chat(fleetEnv({ FAILOVER_ATTEMPTS: '3' }))).status).toBe(200)
  })
})

describe('the fleet', () => {
  it('sends nothing to a draining backend while an active one can serve, and uses it when none can', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0, { state: 'draining' }), backendRecord(1)])
    for (let i = 0; i < 4; i++) expect((await chat(fleetEnv())).status).toBe(200)
    expect((await fleetStats()).map((s) => s.requests)).toEqual([0, 4, 0])
    await writeFleet([backendRecord(0, { state: 'draining' }), dead])
    expect((await chat(fleetEnv())).status).toBe(200)
    expect((await fleetStats())[0]?.completed).toBe(1)
  })

  it('changes without a deploy: a new fleet record is used once the isolate cache expires', async () => {
    await prepareFleet()
    const testEnv = fleetEnv()
    await writeFleet([backendRecord(0)])
    await chat(testEnv)
    await writeFleet([backendRecord(2)])
    await new Promise((resolve) => setTimeout(resolve, 5))
    await chat(testEnv)
    expect((await fleetStats()).map((s) => s.requests)).toEqual([1, 0, 1])
  })

  it('skips a backend the health snapshot calls unhealthy', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0), backendRecord(1)])
    const down = { healthy: false, checkedAt: Date.now(), running: null, waiting: null, kvCacheUsage: null, problem: 'health status 503' }
    await env.FLEET.put(HEALTH_KEY, JSON.stringify({ at: Date.now(), backends: { 'gpu-a': down } }))
    for (let i = 0; i < 3; i++) await chat(fleetEnv())
    expect((await fleetStats()).map((s) => s.requests)).toEqual([0, 3, 0])
  })

  it('holds a request at the edge while every backend is full and sends it when a slot frees', async () => {
    await prepareFleet()
    const testEnv = fleetEnv({ BACKEND_URLS: backendRecord(0).url, BACKEND_MAX_CONCURRENCY: '1' })
    const long = chatBody('[emulator ttft_ms=5 itl_ms=30 reasoning_tokens=10 content_tokens=5]', { stream: true })
    const held = await callIn(testEnv, '/v1/chat/completions', init(long))
    const heldBody = readAll(held.response.body!)
    const startedAt = Date.now()
    const waited = await chat(testEnv)
    expect(waited.status).toBe(200)
    // It went out only once the running one (15 tokens, 30 ms apart) had ended.
    expect(Date.now() - startedAt).toBeGreaterThan(300)
    expect(frames(await heldBody).at(-1)).toBe('data: [DONE]')
    await held.settled()
    expect((await fleetStats())[0]?.completed).toBe(2)
  })

  it('answers 503 with Retry-After at once when every backend is full and the deployment has no slot ledger to queue in', async () => {
    await prepareFleet()
    const testEnv = fleetEnv({ BACKEND_URLS: backendRecord(0).url, BACKEND_MAX_CONCURRENCY: '1', SLOT_LEDGERS: 'off' })
    const long = chatBody('[emulator ttft_ms=5 itl_ms=30 reasoning_tokens=10 content_tokens=5]', { stream: true })
    const held = await callIn(testEnv, '/v1/chat/completions', init(long))
    const startedAt = Date.now()
    const refused = await chat(testEnv)
    expect(refused.status).toBe(503)
    expect(Date.now() - startedAt).toBeLessThan(200)
    expect(refused.headers.get('retry-after')).toBe('1')
    expect(JSON.parse(refused.body)).toMatchObject({ error: { code: 'backends_unavailable', type: 'server_error' } })
    expect(frames(await readAll(held.response.body!)).at(-1)).toBe('data: [DONE]')
    await held.settled()
    expect((await chat(testEnv)).status).toBe(200)
  })
})

describe('circuit breaking', () => {
  it('ejects after consecutive failures, skips the backend, and takes it back once a health check after the cool-down answers', async () => {
    await prepareFleet({ 0: 'refuse:503' })
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
    const testEnv = fleetEnv({ CIRCUIT_COOLDOWN_MS: '1500' })
    for (let i = 0; i < 5; i++) expect((await chat(testEnv)).status).toBe(200)
    // Three failures ejected it: the last two requests went to gpu-b directly.
    expect((await fleetStats())[0]?.requests).toBe(3)
    await prepareFleet()
    await new Promise((resolve) => setTimeout(resolve, 1_600))
    // The first request after the cool-down starts the health check and goes elsewhere meanwhile;
    // the check, not a request, brings gpu-a back, and the next requests go to it.
    for (let i = 0; i < 3; i++) expect((await chat(testEnv)).status).toBe(200)
    expect((await fleetStats())[0]?.completed).toBe(2)
  })
})
