import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { SLOT_LEDGER_NAME } from '../../src/fleet/slots.ts'
import { TEST_KEY_ID, TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { frames } from '../support/sse.ts'
import { adminAuth, captureRecords, recordsOf } from '../support/telemetry.ts'
import { callWorker, chatBody } from '../support/worker.ts'

// Hedged first tokens against three real emulators: one made slow to its first token through its
// own ttftMs (the same prompt goes to both, so a prompt directive could not tell them apart).

const text = '[emulator itl_ms=2 reasoning_tokens=3 content_tokens=3]'
/** The fleet emulators' own first-token time (test/setup/emulator.ts). */
const FLEET_TTFT_MS = 5
/** Hedging at 100 ms for every request (no budget cap), so one test shows one race. */
/**
 * A deployment whose isolates read no FleetLoad view (fleetLoadView answers null without the
 * binding) and claim no slots: the load is then the cron snapshot's, which a test can set.
 */
function withoutFleetLoadView(testEnv: TestEnv): TestEnv {
  const rest: Partial<TestEnv> = { ...testEnv, SLOT_LEDGERS: 'off' }
  delete rest.FLEET_LOAD
  return rest as TestEnv
}

const HEDGE_NOW = { HEDGE_MAX_SHARE: '1', HEDGE_MIN_DELAY_MS: '50', HEDGE_MAX_DELAY_MS: '100' }

async function firstTokenAfter(index: 0 | 1 | 2, ttftMs: number): Promise<void> {
  const response = await fetch(`${fleetUrls[index]}/emulator/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ttftMs }),
  })
  expect(response.ok).toBe(true)
}

async function chat(testEnv: TestEnv, options: { stream?: boolean; secret?: string; n?: number } = {}) {
  const body = chatBody(text, { stream: options.stream ?? true, ...(options.n ? { n: options.n } : {}) })
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${options.secret ?? TEST_SECRET}` },
    body: JSON.stringify(body),
  })
  const answer = await response.text()
  await settled()
  return { status: response.status, body: answer }
}

interface EmulatorStats {
  requests: number
  completed: number
  /** Generations whose client went away first: a hedge's loser must be one (gpu-backend/emulator/stats.ts). */
  aborted: number
  inFlight: number
}

async function fleetStats(): Promise<EmulatorStats[]> {
  return Promise.all(fleetUrls.map(async (url) => (await (await fetch(`${url}/emulator/stats`)).json()) as EmulatorStats))
}

/** Waits until the emulators have seen the ends of the generations the test expects. */
async function statsWhen(done: (stats: EmulatorStats[]) => boolean) {
  let last = await fleetStats()
  await vi.waitFor(
    async () => {
      last = await fleetStats()
      if (!done(last)) throw new Error(`emulators so far: ${JSON.stringify(last)}`)
    },
    { timeout: 5000, interval: 20 },
  )
  return last
}

let capture: ReturnType<typeof captureRecords>

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
  // gpu-b is draining: it comes second in every ranking, so it is always the hedge.
  await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' })])
  capture = captureRecords()
})

afterEach(async () => {
  capture.stop()
  await Promise.all([0, 1, 2].map((index) => firstTokenAfter(index as 0 | 1 | 2, FLEET_TTFT_MS)))
})

describe('hedged first tokens', () => {
  it('asks the next backend when the first sends no token by the deadline; the hedge wins and the slow one is aborted at the emulator', async () => {
    await firstTokenAfter(0, 3000)
    const answer = await chat(fleetEnv(HEDGE_NOW))
    expect(answer.status).toBe(200)
    const sent = frames(answer.body)
    expect(sent.at(-1)).toBe('data: [DONE]')
    expect(sent.filter((frame) => frame.includes('"error"'))).toEqual([])
    // One role chunk, 3 + 3 token chunks, the finish chunk: one generation's, nothing interleaved.
    expect(sent.filter((frame) => frame.includes('"role"'))).toHaveLength(1)
    const [a, b] = await statsWhen(([a]) => a?.aborted === 1)
    expect(a).toMatchObject({ requests: 1, aborted: 1, completed: 0, inFlight: 0 })
    expect(b).toMatchObject({ requests: 1, completed: 1 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-b', attempts: 2, hedged: true, hedgeWon: 'hedge' })
  })

  it('keeps the primary when it answers first, and aborts the hedge at the emulator', async () => {
    await firstTokenAfter(0, 400)
    await firstTokenAfter(1, 3000)
    const answer = await chat(fleetEnv(HEDGE_NOW))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b] = await statsWhen(([, b]) => b?.aborted === 1)
    expect(a).toMatchObject({ requests: 1, completed: 1 })
    expect(b).toMatchObject({ requests: 1, aborted: 1, completed: 0, inFlight: 0 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-a', hedged: true, hedgeWon: 'primary' })
  })

  it('hedges stream: false and n > 1 requests too: the answer is the winner alone', async () => {
    await firstTokenAfter(0, 3000)
    const testEnv = fleetEnv(HEDGE_NOW)
    const single = await chat(testEnv, { stream: false })
    expect(single.status).toBe(200)
    const choices = await chat(testEnv, { stream: false, n: 2 })
    const completion = JSON.parse(choices.body) as { choices: { index: number }[] }
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1])
    const [a, b] = await statsWhen(([a]) => a?.aborted === 2)
    expect(a).toMatchObject({ requests: 2, completed: 0 })
    expect(b).toMatchObject({ requests: 2, completed: 2 })
  })

  it('is off for a deployment with HEDGING=off: the slow backend is waited for', async () => {
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv({ ...HEDGE_NOW, HEDGING: 'off' }))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b] = await fleetStats()
    expect(a).toMatchObject({ requests: 1, completed: 1 })
    expect(b?.requests).toBe(0)
  })

  it("is off for a key whose record says hedging: false, and the key's requests are not hedged", async () => {
    const secret = randomSecret()
    const key = await seedKey(env.KEYS, secret, { hedging: false })
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv(HEDGE_NOW), { secret })
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.requests).toBe(0)
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ backend: 'gpu-a', attempts: 1, hedged: false, hedgeWon: null })
  })

  it('hedges at most HEDGE_MAX_SHARE of the requests: 5% of 20 is one hedge', async () => {
    await firstTokenAfter(0, 150)
    const testEnv = fleetEnv({ HEDGE_MIN_DELAY_MS: '50', HEDGE_MAX_DELAY_MS: '100', HEDGE_MAX_SHARE: '0.05' })
    for (let i = 0; i < 19; i++) await chat(testEnv)
    expect((await fleetStats())[1]?.requests).toBe(0)
    await chat(testEnv)
    await chat(testEnv)
    const [, b] = await fleetStats()
    expect(b?.requests).toBe(1)
  })

  it.each([
    ['does not hedge when the fleet is saturated: every backend is at its sequence slots', 2, 0],
    ['does not hedge onto a full backend while the chosen one has free slots either: it would only queue', 64, 0],
  ])('%s', async (_, primarySlots, hedges) => {
    // The probe saw one request waiting on each; gpu-b runs one at a time, so it is full; gpu-a
    // with 2 slots is full once this request runs there too.
    await writeFleet([backendRecord(0, { maxConcurrency: primarySlots }), backendRecord(1, { state: 'draining', maxConcurrency: 1 })])
    const healthy = { healthy: true, checkedAt: Date.now(), running: 1, kvCacheUsage: 0.1, problem: null }
    await env.FLEET.put(
      HEALTH_KEY,
      JSON.stringify({ at: Date.now(), backends: { 'gpu-a': { ...healthy, waiting: 1 }, 'gpu-b': { ...healthy, waiting: 1 } } }),
    )
    await firstTokenAfter(0, 300)
    // The load here is the cron snapshot's: without the fleet-wide view and the slot ledger (which
    // would report the emulators' real, empty queues, fresher than the snapshot and so preferred).
    const answer = await chat(withoutFleetLoadView(fleetEnv(HEDGE_NOW)))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.requests).toBe(hedges)
  })

  it('hedges onto the first candidate with a free slot when the next one is full', async () => {
    // Ranked gpu-a and gpu-b (active; gpu-b full: the probe saw one waiting on its one slot), then
    // gpu-c (draining, free). The hedge skips gpu-b for gpu-c.
    await writeFleet([backendRecord(0), backendRecord(1, { maxConcurrency: 1 }), backendRecord(2, { state: 'draining' })])
    const healthy = { healthy: true, checkedAt: Date.now(), running: 0, waiting: 0, kvCacheUsage: 0.1, problem: null }
    await env.FLEET.put(
      HEALTH_KEY,
      JSON.stringify({ at: Date.now(), backends: { 'gpu-a': healthy, 'gpu-b': { ...healthy, waiting: 1 }, 'gpu-c': healthy } }),
    )
    await firstTokenAfter(0, 3000)
    const answer = await chat(withoutFleetLoadView(fleetEnv(HEDGE_NOW)))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b, c] = await statsWhen(([a]) => a?.aborted === 1)
    expect(b?.requests).toBe(0)
    expect(c).toMatchObject({ requests: 1, completed: 1 })
    expect(a).toMatchObject({ requests: 1, aborted: 1 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-c', hedged: true, hedgeWon: 'hedge' })
  })

  it("fails over after a hedge: the hedge's failure is not the request's, and a primary that times out moves to the next backend", async () => {
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' }), backendRecord(2, { state: 'draining' })])
    // gpu-a accepts and then sends nothing (a hedge starts once a backend accepted).
    await prepareFleet({ 0: 'stall_after:0', 1: 'die_after:0' })
    const answer = await chat(fleetEnv({ ...HEDGE_NOW, FIRST_EVENT_TIMEOUT_MS: '600' }))
    const sent = frames(answer.body)
    expect(sent.filter((frame) => frame.includes('"error"'))).toEqual([])
    expect(sent.at(-1)).toBe('data: [DONE]')
    const [a, b, c] = await fleetStats()
    expect(a?.requests).toBe(1)
    expect(b).toMatchObject({ requests: 1, completed: 0 })
    expect(c).toMatchObject({ requests: 1, completed: 1 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-c', attempts: 3, hedged: true, hedgeWon: null })
  })

  it('keeps the request when the primary dies while the hedge runs: the hedge serves it', async () => {
    await prepareFleet({ 0: 'die_after:0' })
    await firstTokenAfter(0, 300)
    await firstTokenAfter(1, 600)
    const answer = await chat(fleetEnv({ ...HEDGE_NOW, HEDGE_MIN_DELAY_MS: '20', HEDGE_MAX_DELAY_MS: '20' }))
    const sent = frames(answer.body)
    expect(sent.filter((frame) => frame.includes('"error"'))).toEqual([])
    expect(sent.at(-1)).toBe('data: [DONE]')
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-b', attempts: 2, hedged: true, hedgeWon: 'hedge' })
  })

  it('waits for a hedge that is still opening when the primary dies, and fails over when the hedge never opens either', async () => {
    await writeFleet([backendRecord(0), backendRecord(1, { state: 'draining' }), backendRecord(2, { state: 'draining' })])
    // gpu-a dies at its first token (300 ms); gpu-b never answers the hedge's request at all.
    await prepareFleet({ 0: 'die_after:0', 1: 'hang' })
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv({ ...HEDGE_NOW, FIRST_EVENT_TIMEOUT_MS: '700' }))
    const sent = frames(answer.body)
    expect(sent.filter((frame) => frame.includes('"error"'))).toEqual([])
    expect(sent.at(-1)).toBe('data: [DONE]')
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-c', attempts: 3, hedged: true, hedgeWon: null })
    // The client waited for the hedge's deadline: the failover came after gpu-b timed out, not at once.
    expect(record?.ttftBackendMs).toBeGreaterThanOrEqual(700)
  })

  it('counts hedges in /metrics by which won, and not as failovers', async () => {
    const metric = async (sample: string) => {
      const body = await (await callWorker('/metrics', { headers: await adminAuth() })).text()
      const line = body.split('\n').find((candidate) => candidate.startsWith(`${sample} `))
      return line === undefined ? 0 : Number(line.slice(sample.length + 1))
    }
    const before = { hedge: await metric('edge_proxy_hedges_total{won="hedge"}'), failovers: await metric('edge_proxy_failovers_total') }
    await firstTokenAfter(0, 3000)
    await chat(fleetEnv(HEDGE_NOW))
    await recordsOf(capture, TEST_KEY_ID)
    await vi.waitFor(async () => expect(await metric('edge_proxy_hedges_total{won="hedge"}')).toBe(before.hedge + 1), { timeout: 5000 })
    expect(await metric('edge_proxy_failovers_total')).toBe(before.failovers)
  })

  describe('with the slot ledger on (SLOT_LEDGERS)', () => {
    const ledger = () => env.BACKEND_SLOTS.get(env.BACKEND_SLOTS.idFromName(SLOT_LEDGER_NAME))
    /** A deadline far past the slow backend's first token: only the ledger's answer can start a hedge. */
    const LEDGER_ON = { SLOT_LEDGERS: 'on', HEDGE_MAX_SHARE: '1', HEDGE_MIN_DELAY_MS: '10000', HEDGE_MAX_DELAY_MS: '10000' }
    const ledgerCount = async (id: string) => (await ledger().counts())[id] ?? 0

    it("hedges at once a request the ledger counts queued behind another isolate's requests, well before the deadline", async () => {
      // Another isolate holds gpu-a's one slot. This isolate's ranking knows nothing of it and
      // sends the request to gpu-a; the claim's answer says it waits there, so gpu-b is asked now.
      await writeFleet([backendRecord(0, { maxConcurrency: 1 }), backendRecord(1, { state: 'draining' })])
      await ledger().claim('gpu-a', 'other-isolate')
      try {
        await firstTokenAfter(0, 3000)
        const answer = await chat(fleetEnv(LEDGER_ON))
        expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
        const [a, b] = await statsWhen(([a]) => a?.aborted === 1)
        expect(a).toMatchObject({ requests: 1, aborted: 1, completed: 0 })
        expect(b).toMatchObject({ requests: 1, completed: 1 })
        const [record] = await recordsOf(capture, TEST_KEY_ID)
        expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-b', hedged: true, hedgeWon: 'hedge' })
        // Both of the request's leases are released: only the other isolate's is left.
        await vi.waitFor(async () => expect([await ledgerCount('gpu-a'), await ledgerCount('gpu-b')]).toEqual([1, 0]))
      } finally {
        await ledger().release('gpu-a', 'other-isolate')
      }
    })

    it('waits for the backend it chose when the ledger counts a free slot there, and frees its lease at the end', async () => {
      await writeFleet([backendRecord(0, { maxConcurrency: 1 }), backendRecord(1, { state: 'draining' })])
      await firstTokenAfter(0, 300)
      const answer = await chat(fleetEnv(LEDGER_ON))
      expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
      const [a, b] = await fleetStats()
      expect(a).toMatchObject({ requests: 1, completed: 1 })
      expect(b?.requests).toBe(0)
      await vi.waitFor(async () => expect(await ledgerCount('gpu-a')).toBe(0))
    })
  })
})
