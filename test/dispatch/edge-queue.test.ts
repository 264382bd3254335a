// The edge queue through the Worker (src/dispatch/open-attempts.ts waitAtEdge, the slot ledger's
// acquire): one fleet emulator registered with one sequence slot, so the second request finds the
// fleet full and waits at the edge. Which request goes next is read from when each one's first data
// event reaches its client: the backend serves them one after another.
import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { KeyRecord } from '../../src/auth/key-record.ts'
import { queueRefusal } from '../../src/dispatch/open-attempts.ts'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { SLOT_LEDGER_NAME } from '../../src/fleet/slots.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetStats, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { frameReader, frames, readAll } from '../support/sse.ts'
import { captureRecords, recordsOf } from '../support/telemetry.ts'
import { chatBody } from '../support/worker.ts'

const ledger = () => env.BACKEND_SLOTS.get(env.BACKEND_SLOTS.idFromName(SLOT_LEDGER_NAME))
/** About 600 ms of generation: long enough for the next requests to queue behind it. */
const LONG = '[emulator ttft_ms=5 itl_ms=40 reasoning_tokens=10 content_tokens=5]'
/** About 150 ms: the queued requests, served one after another. */
const SHORT = '[emulator ttft_ms=5 itl_ms=10 reasoning_tokens=10 content_tokens=5]'

interface Caller {
  secret: string
  record: KeyRecord
}

async function caller(fields: Partial<KeyRecord> = {}): Promise<Caller> {
  const secret = randomSecret()
  return { secret, record: await seedKey(env.KEYS, secret, fields) }
}

function send(testEnv: TestEnv, who: Caller, text: string, signal?: AbortSignal) {
  return callIn(testEnv, '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${who.secret}` },
    body: JSON.stringify(chatBody(text, { stream: true })),
    ...(signal ? { signal } : {}),
  })
}

/** Sends a request and resolves with when its first data event reached the client, and its whole stream. */
async function timed(testEnv: TestEnv, who: Caller, text: string) {
  const { response, settled } = await send(testEnv, who, text)
  const reader = frameReader(response.body!)
  let first: string | null
  do first = await reader.next()
  while (first !== null && !first.startsWith('data: '))
  const firstDataAt = Date.now()
  const rest: string[] = []
  for (let frame = await reader.next(); frame !== null; frame = await reader.next()) rest.push(frame)
  await settled()
  return { firstDataAt, status: response.status, headers: response.headers, last: rest.at(-1) }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let testEnv: TestEnv

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
  await writeFleet([backendRecord(0, { maxConcurrency: 1 })])
  // A fresh deployment's view each test: the isolate keeps live stats per configuration.
  testEnv = fleetEnv({ HEDGING: 'off' })
})

afterEach(async () => {
  await vi.waitFor(async () => expect((await ledger().counts())['gpu-a'] ?? 0).toBe(0), { timeout: 5_000 })
})

describe('the edge queue, through the Worker', () => {
  it('sends waiting requests by priority class first, then by turns between keys, whatever their arrival order', async () => {
    const [holder, bulk, twice, once, chat] = await Promise.all([
      caller(),
      caller({ priority: 'batch' }),
      caller(),
      caller(),
      caller({ priority: 'interactive' }),
    ])
    // Slots freed lately give the queue its service rate; without one it holds no more than the
    // fleet has slots (waitEstimate), one here, and this test queues four.
    for (let i = 0; i < 3; i++) await timed(testEnv, holder, SHORT)
    const running = timed(testEnv, holder, LONG)
    await sleep(150)
    const batch = timed(testEnv, bulk, SHORT)
    await sleep(100)
    const twiceFirst = timed(testEnv, twice, SHORT)
    const twiceSecond = timed(testEnv, twice, SHORT)
    await sleep(100)
    const onceOnly = timed(testEnv, once, SHORT)
    await sleep(100)
    // Interactive may hold one more than the slots (vLLM's queue, where it goes first): no edge wait.
    const sentAt = Date.now()
    const interactive = await timed(testEnv, chat, SHORT)
    expect(interactive.firstDataAt - sentAt).toBeLessThan(400)
    const served = await Promise.all([running, twiceFirst, onceOnly, twiceSecond, batch])
    for (const answer of served) expect(answer.last).toBe('data: [DONE]')
    const order = served.map((answer) => answer.firstDataAt)
    expect([...order].sort((a, b) => a - b)).toEqual(order)
  })

  it('commits a waiting stream after a second with x-edge-queue: waiting and its deadline, and only comments, then its answer; the wait is recorded apart from the backend TTFT', async () => {
    const capture = captureRecords()
    try {
      const [holder, waiter] = await Promise.all([caller(), caller()])
      const running = timed(testEnv, holder, '[emulator ttft_ms=5 itl_ms=100 reasoning_tokens=10 content_tokens=5]')
      await sleep(150)
      const sentAt = Date.now()
      const { response, settled } = await send(testEnv, waiter, SHORT)
      expect(response.status).toBe(200)
      expect(Date.now() - sentAt).toBeGreaterThanOrEqual(900)
      // A standard key's request waits at most 20 s, and is told so.
      expect(response.headers.get('x-edge-queue')).toBe('waiting; deadline=20')
      const sent = frames(await readAll(response.body!))
      await settled()
      const firstData = sent.findIndex((frame) => frame.startsWith('data: '))
      expect(firstData).toBeGreaterThan(0)
      for (const frame of sent.slice(0, firstData)) expect(frame.startsWith(':')).toBe(true)
      expect(sent.at(-1)).toBe('data: [DONE]')
      await running
      const [record] = await recordsOf(capture, waiter.record.id)
      expect(record?.edgeWaitMs).toBeGreaterThan(900)
      expect(record?.ttftBackendMs).toBeLessThan(record!.edgeWaitMs)
      expect(record?.ttftClientMs).toBeGreaterThan(record!.edgeWaitMs)
      const [held] = await recordsOf(capture, holder.record.id)
      expect(held?.edgeWaitMs).toBe(0)
    } finally {
      capture.stop()
    }
  })

  it('lets a request whose client left go at once: it leaves the queue and never reaches the backend', async () => {
    const [holder, leaver, stayer] = await Promise.all([caller(), caller(), caller()])
    const running = timed(testEnv, holder, LONG)
    await sleep(150)
    const gone = new AbortController()
    const left = send(testEnv, leaver, SHORT, gone.signal)
    await vi.waitFor(async () => expect(await ledger().waiting()).toBe(1), { timeout: 2_000, interval: 20 })
    gone.abort()
    await vi.waitFor(async () => expect(await ledger().waiting()).toBe(0), { timeout: 2_000, interval: 20 })
    const served = await timed(testEnv, stayer, SHORT)
    expect(served.last).toBe('data: [DONE]')
    await running
    await left.then(({ settled }) => settled()).catch(() => undefined)
    const [stats] = await fleetStats()
    expect(stats?.requests).toBe(2)
  })
})

describe('batch requests', () => {
  it("are admitted by the ledger's exact counts, not this isolate's view: slots recently used by interactive requests stay free of them", async () => {
    await writeFleet([backendRecord(0, { maxConcurrency: 8 })])
    // Another isolate's requests, which this isolate knows nothing of: six standard, one interactive.
    const others = Array.from({ length: 6 }, (_, i) => `other-isolate-${i}`)
    await Promise.all(others.map((leaseId) => ledger().claim('gpu-a', leaseId)))
    await ledger().claim('gpu-a', 'other-isolate-chat', { placements: [], since: null }, 'interactive')
    try {
      const bulk = await caller({ priority: 'batch' })
      const waiting = timed(testEnv, bulk, SHORT)
      await vi.waitFor(async () => expect(await ledger().waiting()).toBe(1), { timeout: 2_000, interval: 20 })
      expect((await fleetStats())[0]?.requests).toBe(0)
      // A standard request goes straight to the free slot on this isolate's view.
      const standard = await timed(testEnv, await caller(), SHORT)
      expect(standard.last).toBe('data: [DONE]')
      // The reserve is at most half the slots: once more than that is free, batch goes.
      await Promise.all(others.splice(0).map((leaseId) => ledger().release('gpu-a', leaseId)))
      expect((await waiting).last).toBe('data: [DONE]')
    } finally {
      await Promise.all([...others, 'other-isolate-chat'].map((leaseId) => ledger().release('gpu-a', leaseId)))
    }
  })
})

describe('queueRefusal', () => {
  it.each([
    ['queue_full', 'would not be served within'],
    ['queue_timeout', 'waited 20.0 s'],
    ['queue_displaced', 'higher priority class'],
  ] as const)('answers %s as a 503 with Retry-After and says why', (reason, words) => {
    const error = queueRefusal({ kind: 'refused', reason, retryAfterS: 7, waitedMs: 20_000 })
    expect(error.status).toBe(503)
    expect(error.code).toBe(reason)
    expect(error.headers).toMatchObject({ 'retry-after': '7' })
    expect(error.message).toContain(words)
    expect(error.message).toContain('retry after 7 s')
  })

  it('answers a ledger that did not answer as backends_unavailable, and a request that left as the client closing it', () => {
    expect(queueRefusal({ kind: 'unavailable', waitedMs: 0 })).toMatchObject({ status: 503, code: 'backends_unavailable' })
    expect(queueRefusal({ kind: 'left', waitedMs: 0 })).toMatchObject({ code: 'client_closed_request' })
  })
})
