import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { SLOT_LEDGER_NAME } from '../../src/fleet/slots.ts'
import { TEST_KEY_ID, TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { frames } from '../support/sse.ts'
import { adminAuth, captureRecords, recordsOf } from '../support/telemetry.ts'
import { callWorker, chatBody } from '../support/worker.ts'

// Hedging a queued request, against three real emulators and the real slot ledger (BackendSlots).
// A backend is made full the way another isolate would fill it: a lease claimed on the ledger
// object from the test, which this isolate's ranking knows nothing of. The request's own claim then
// answers a count above the backend's maxConcurrency, and the request is hedged at once. A backend
// "waiting in its queue" is one made slow to its first token through its own ttftMs (the same
// prompt goes to both, so a prompt directive could not tell them apart).

const text = '[emulator itl_ms=2 reasoning_tokens=3 content_tokens=3]'
/** The fleet emulators' own first-token time (test/setup/emulator.ts). */
const FLEET_TTFT_MS = 5
/** A deployment with the slot ledger and hedging on (wrangler.toml's defaults, stated here). */
const QUEUED_HEDGING = { SLOT_LEDGERS: 'on', HEDGING: 'on' }

const ledger = () => env.BACKEND_SLOTS.get(env.BACKEND_SLOTS.idFromName(SLOT_LEDGER_NAME))
const ledgerCount = async (id: string) => (await ledger().counts())[id] ?? 0

/** Leases the test holds on behalf of "other isolates", released after each test. */
let held: { backendId: string; leaseId: string }[] = []

/** Another isolate's request at `backendId`: one lease on the ledger, unknown to the isolate under test. */
async function occupy(backendId: string): Promise<void> {
  const leaseId = `other-isolate-${crypto.randomUUID()}`
  held.push({ backendId, leaseId })
  await ledger().claim(backendId, leaseId)
}

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

/** A cron health snapshot in which every listed backend is up with `waiting` requests queued. */
async function writeHealth(waiting: Record<string, number>): Promise<void> {
  const healthy = { healthy: true, checkedAt: Date.now(), running: 0, kvCacheUsage: 0.1, problem: null }
  const backends = Object.fromEntries(Object.entries(waiting).map(([id, count]) => [id, { ...healthy, waiting: count }]))
  await env.FLEET.put(HEALTH_KEY, JSON.stringify({ at: Date.now(), backends }))
}

let capture: ReturnType<typeof captureRecords>

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
  // gpu-a runs one sequence at a time and is the only active backend, so it is always the primary;
  // gpu-b is draining: it comes second in every ranking, so it is the hedge. Another isolate's
  // request holds gpu-a's one slot: this request's claim counts 2 there, and it waits in the queue.
  await writeFleet([backendRecord(0, { maxConcurrency: 1 }), backendRecord(1, { state: 'draining' })])
  await occupy('gpu-a')
  capture = captureRecords()
})

afterEach(async () => {
  capture.stop()
  await Promise.all(held.map(({ backendId, leaseId }) => ledger().release(backendId, leaseId)))
  held = []
  await Promise.all([0, 1, 2].map((index) => firstTokenAfter(index as 0 | 1 | 2, FLEET_TTFT_MS)))
  await prepareFleet()
  // Every lease the requests claimed is released, the losers' and the failed attempts' included.
  await vi.waitFor(async () => expect(await ledger().counts()).toMatchObject({ 'gpu-a': 0 }), { timeout: 5000 })
  const counts = await ledger().counts()
  for (const id of ['gpu-b', 'gpu-c']) expect(counts[id] ?? 0, id).toBe(0)
})

/** gpu-a served the request alone: no hedge started, gpu-b saw nothing, and the record says so. */
async function expectServedByFirstAlone(answer: { body: string }): Promise<void> {
  expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
  const [a, b] = await fleetStats()
  expect(a).toMatchObject({ requests: 1, completed: 1 })
  expect(b?.requests).toBe(0)
  const [record] = await recordsOf(capture, TEST_KEY_ID)
  expect(record).toMatchObject({ backend: 'gpu-a', attempts: 1, hedged: false, hedgeWon: null })
}

describe('hedging a queued request', () => {
  it("hedges at once a request the ledger counts queued behind another isolate's request; the hedge wins and the queued one is aborted at the emulator", async () => {
    await firstTokenAfter(0, 3000)
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
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
    // Both of the request's leases are released: only the other isolate's is left.
    await vi.waitFor(async () => expect([await ledgerCount('gpu-a'), await ledgerCount('gpu-b')]).toEqual([1, 0]))
  })

  it('keeps the primary when it answers first, and aborts the hedge at the emulator', async () => {
    await firstTokenAfter(0, 400)
    await firstTokenAfter(1, 3000)
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b] = await statsWhen(([, b]) => b?.aborted === 1)
    expect(a).toMatchObject({ requests: 1, completed: 1 })
    expect(b).toMatchObject({ requests: 1, aborted: 1, completed: 0, inFlight: 0 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-a', attempts: 2, hedged: true, hedgeWon: 'primary' })
  })

  it('hedges stream: false and n > 1 requests too: the answer is the winner alone', async () => {
    await firstTokenAfter(0, 3000)
    const single = await chat(fleetEnv(QUEUED_HEDGING), { stream: false })
    expect(single.status).toBe(200)
    expect((JSON.parse(single.body) as { choices: unknown[] }).choices).toHaveLength(1)
    // A fresh isolate's view: this one now knows gpu-a is full and would send the next request
    // straight to gpu-b, with nothing to hedge.
    const choices = await chat(fleetEnv(QUEUED_HEDGING), { stream: false, n: 2 })
    expect(choices.status).toBe(200)
    const completion = JSON.parse(choices.body) as { choices: { index: number }[] }
    expect(completion.choices.map((choice) => choice.index)).toEqual([0, 1])
    const [a, b] = await statsWhen(([a]) => a?.aborted === 2)
    expect(a).toMatchObject({ requests: 2, completed: 0 })
    expect(b).toMatchObject({ requests: 2, completed: 2 })
    const records = await recordsOf(capture, TEST_KEY_ID, 2)
    for (const record of records) expect(record).toMatchObject({ backend: 'gpu-b', hedged: true, hedgeWon: 'hedge' })
  })

  it('is off for a deployment with HEDGING=off: the queued request waits for its backend', async () => {
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv({ ...QUEUED_HEDGING, HEDGING: 'off' }))
    await expectServedByFirstAlone(answer)
  })

  it("is off for a key whose record says hedging: false, and the key's requests are not hedged", async () => {
    const secret = randomSecret()
    const key = await seedKey(env.KEYS, secret, { hedging: false })
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv(QUEUED_HEDGING), { secret })
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    expect((await fleetStats())[1]?.requests).toBe(0)
    const [record] = await recordsOf(capture, key.id)
    expect(record).toMatchObject({ backend: 'gpu-a', attempts: 1, hedged: false, hedgeWon: null })
  })

  it('does not hedge without the slot ledger (SLOT_LEDGERS=off): nothing tells the request it is queued', async () => {
    // The cron snapshot is the load the ranking reads with the ledger off: it says gpu-a has room
    // (else gpu-b would be chosen outright). Only a claim's answer could tell the request it queues.
    await writeHealth({ 'gpu-a': 0, 'gpu-b': 0 })
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv({ ...QUEUED_HEDGING, SLOT_LEDGERS: 'off' }))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b] = await fleetStats()
    expect(a).toMatchObject({ requests: 1, completed: 1 })
    expect(b?.requests).toBe(0)
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ backend: 'gpu-a', hedged: false })
    // No lease was claimed for the request: only the other isolate's is counted.
    expect(await ledgerCount('gpu-a')).toBe(1)
  })

  it('waits for the backend it chose when the ledger counts a free slot there, and frees its lease at the end', async () => {
    await Promise.all(held.map(({ backendId, leaseId }) => ledger().release(backendId, leaseId)))
    held = []
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
    await expectServedByFirstAlone(answer)
    await vi.waitFor(async () => expect(await ledgerCount('gpu-a')).toBe(0))
  })

  it('hedges onto the first candidate with a free slot by the ledger, skipping a full one the ranking put ahead', async () => {
    // Ranked gpu-a (active), then gpu-b and gpu-c (draining; gpu-b's weight puts it first, by the
    // conversation's hash as by cost). The ranking sees them all empty; the ledger's answer to the
    // request's claim says another isolate holds gpu-b's one slot, so the hedge skips it for gpu-c.
    await writeFleet([
      backendRecord(0, { maxConcurrency: 1 }),
      backendRecord(1, { state: 'draining', maxConcurrency: 1, weight: 100 }),
      backendRecord(2, { state: 'draining' }),
    ])
    await occupy('gpu-b')
    await firstTokenAfter(0, 3000)
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
    expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
    const [a, b, c] = await statsWhen(([a]) => a?.aborted === 1)
    expect(b?.requests).toBe(0)
    expect(c).toMatchObject({ requests: 1, completed: 1 })
    expect(a).toMatchObject({ requests: 1, aborted: 1 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-c', attempts: 2, hedged: true, hedgeWon: 'hedge' })
  })

  it('does not hedge when every candidate is full: the request waits in its own queue', async () => {
    await writeFleet([backendRecord(0, { maxConcurrency: 1 }), backendRecord(1, { state: 'draining', maxConcurrency: 1 })])
    await occupy('gpu-b')
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
    await expectServedByFirstAlone(answer)
  })

  it("fails over after a hedge: the hedge's failure is not the request's, and a primary that times out moves to the next backend", async () => {
    await writeFleet([
      backendRecord(0, { maxConcurrency: 1 }),
      backendRecord(1, { state: 'draining', weight: 100 }),
      backendRecord(2, { state: 'draining' }),
    ])
    // gpu-a accepts and then sends nothing; the hedge on gpu-b dies before its first token.
    await prepareFleet({ 0: 'stall_after:0', 1: 'die_after:0' })
    const answer = await chat(fleetEnv({ ...QUEUED_HEDGING, FIRST_EVENT_TIMEOUT_MS: '600' }))
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
    const answer = await chat(fleetEnv(QUEUED_HEDGING))
    const sent = frames(answer.body)
    expect(sent.filter((frame) => frame.includes('"error"'))).toEqual([])
    expect(sent.at(-1)).toBe('data: [DONE]')
    const [a, b] = await fleetStats()
    expect(a).toMatchObject({ requests: 1, completed: 0 })
    expect(b).toMatchObject({ requests: 1, completed: 1 })
    const [record] = await recordsOf(capture, TEST_KEY_ID)
    expect(record).toMatchObject({ outcome: 'ok', backend: 'gpu-b', attempts: 2, hedged: true, hedgeWon: 'hedge' })
  })

  it('waits for a hedge that is still opening when the primary dies, and fails over when the hedge never opens either', async () => {
    await writeFleet([
      backendRecord(0, { maxConcurrency: 1 }),
      backendRecord(1, { state: 'draining', weight: 100 }),
      backendRecord(2, { state: 'draining' }),
    ])
    // gpu-a dies at its first token (300 ms); gpu-b never answers the hedge's request at all.
    await prepareFleet({ 0: 'die_after:0', 1: 'hang' })
    await firstTokenAfter(0, 300)
    const answer = await chat(fleetEnv({ ...QUEUED_HEDGING, FIRST_EVENT_TIMEOUT_MS: '700' }))
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
    await chat(fleetEnv(QUEUED_HEDGING))
    await recordsOf(capture, TEST_KEY_ID)
    await vi.waitFor(async () => expect(await metric('edge_proxy_hedges_total{won="hedge"}')).toBe(before.hedge + 1), { timeout: 5000 })
    expect(await metric('edge_proxy_failovers_total')).toBe(before.failovers)
  })
})
