// The fleet's slot ledger (src/durable/backend-slots.ts) as workerd runs it, and the isolate's
// side of it (src/fleet/slots.ts): claims, releases, counts, leases that are never released, and
// the conversation placements the claims carry between isolates.
import { runInDurableObject } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { LEASE_TTL_MS, type BackendSlots, type SlotTicket } from '../../src/durable/backend-slots.ts'
import { LiveStats } from '../../src/fleet/live-stats.ts'
import { SLOT_LEDGER_NAME, slotLedger } from '../../src/fleet/slots.ts'

// Each test names its own backends: the ledger is one in-memory object for the whole file.
const ledger = () => env.BACKEND_SLOTS.get(env.BACKEND_SLOTS.idFromName(SLOT_LEDGER_NAME))
const only = (counts: Record<string, number>, ids: string[]) => Object.fromEntries(ids.map((id) => [id, counts[id] ?? 0]))

afterEach(() => {
  vi.useRealTimers()
})

describe('the slot ledger', () => {
  it("counts a claim at its backend and answers every backend's count, the new request included", async () => {
    expect(only((await ledger().claim('count-a', 'l1')).counts, ['count-a', 'count-b'])).toEqual({ 'count-a': 1, 'count-b': 0 })
    await ledger().claim('count-a', 'l2')
    expect(only((await ledger().claim('count-b', 'l3')).counts, ['count-a', 'count-b'])).toEqual({ 'count-a': 2, 'count-b': 1 })
  })

  it('frees a released lease; releasing an unknown lease, or one twice, changes nothing', async () => {
    await ledger().claim('free-a', 'l1')
    await ledger().claim('free-a', 'l2')
    await ledger().release('free-a', 'l1')
    await ledger().release('free-a', 'l1')
    await ledger().release('free-a', 'never-claimed')
    await ledger().release('free-unknown-backend', 'l2')
    expect(only(await ledger().counts(), ['free-a'])).toEqual({ 'free-a': 1 })
  })

  it('drops a lease never released once LEASE_TTL_MS has passed (its isolate went away mid-request)', async () => {
    await runInDurableObject(ledger(), async (instance: BackendSlots) => {
      vi.useFakeTimers({ now: Date.now() })
      instance.claim('ttl-a', 'lost')
      vi.advanceTimersByTime(LEASE_TTL_MS / 2)
      instance.claim('ttl-a', 'recent')
      expect(instance.counts()['ttl-a']).toBe(2)
      vi.advanceTimersByTime(LEASE_TTL_MS / 2)
      expect(instance.counts()['ttl-a']).toBe(1)
    })
  })
})

describe("an isolate's claims", () => {
  it('are off when the deployment turns the ledger off or lacks the binding', () => {
    expect(slotLedger(env, false, new LiveStats())).toBeNull()
    expect(slotLedger({} as Pick<typeof env, 'BACKEND_SLOTS'>, true, new LiveStats())).toBeNull()
  })

  it("answer every backend's count, and a release (once, however often it is called) frees the lease in the background", async () => {
    const background: Promise<unknown>[] = []
    const slots = slotLedger(env, true, new LiveStats(), (work) => void background.push(work))
    const first = slots?.claim('isolate-a')
    const second = slots?.claim('isolate-a')
    await first?.counted
    expect((await second?.counted)?.['isolate-a']).toBe(2)
    first?.release()
    first?.release()
    expect(background).toHaveLength(1)
    await Promise.all(background)
    expect((await ledger().counts())['isolate-a']).toBe(1)
  })

  it('releases after the claim even when released before its answer came, so no lease outlives its request', async () => {
    const slots = slotLedger(env, true, new LiveStats())
    const claim = slots?.claim('early-a')
    claim?.release()
    await claim?.counted
    await vi.waitFor(async () => expect((await ledger().counts())['early-a']).toBe(0))
  })
})

describe('conversation placements on the claims', () => {
  it("carry one isolate's placements to another with its next claim, and never back to their sender", async () => {
    const [first, second] = [new LiveStats(), new LiveStats()]
    const [firstSlots, secondSlots] = [slotLedger(env, true, first), slotLedger(env, true, second)]
    // Each isolate's first claim learns where the log stands.
    await firstSlots?.claim('placed-a').counted
    await secondSlots?.claim('placed-a').counted
    first.remember('conversation-1', 'placed-a')
    await firstSlots?.claim('placed-a').counted
    expect(second.recall('conversation-1')).toBeUndefined()
    await secondSlots?.claim('placed-b').counted
    expect(second.recall('conversation-1')).toBe('placed-a')
    second.remember('conversation-2', 'placed-b')
    await secondSlots?.claim('placed-b').counted
    await firstSlots?.claim('placed-a').counted
    expect(first.recall('conversation-2')).toBe('placed-b')
    expect(first.recall('conversation-1')).toBe('placed-a')
  })
})

describe('the edge queue on the ledger', () => {
  let serial = 0
  const ticket = (backend: string, fields: Partial<SlotTicket> = {}): SlotTicket => ({
    id: `ticket-${serial++}`,
    keyId: 'key-a',
    priority: 'standard',
    weight: 1,
    offers: [{ id: backend, maxConcurrency: 1 }],
    deadlineMs: 5_000,
    ...fields,
  })
  const filled = async (backend: string) => {
    await ledger().claim(backend, `${backend}-running`)
    return () => ledger().release(backend, `${backend}-running`)
  }

  it('grants a slot at once on the first offered backend with room for its class, and counts the lease under the ticket', async () => {
    await filled('grant-a')
    const offers = [
      { id: 'grant-a', maxConcurrency: 1 },
      { id: 'grant-b', maxConcurrency: 1 },
    ]
    const grant = await ledger().acquire(ticket('grant-a', { offers }))
    expect(grant).toMatchObject({ kind: 'granted', backendId: 'grant-b' })
    expect(only(await ledger().counts(), ['grant-a', 'grant-b'])).toEqual({ 'grant-a': 1, 'grant-b': 1 })
    // An interactive request may still go where standard found no room: vLLM's queue, where it goes first.
    expect(await ledger().acquire(ticket('grant-a', { priority: 'interactive' }))).toMatchObject({ kind: 'granted', backendId: 'grant-a' })
  })

  it('holds a request while every offered backend is full and hands it the slot a release frees, at once', async () => {
    const free = await filled('wait-a')
    const calledAt = Date.now()
    let answered = false
    const waiting = ledger().acquire(ticket('wait-a'))
    void waiting.then(() => (answered = true))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(answered).toBe(false)
    const releasedAt = Date.now()
    await free()
    const grant = await waiting
    expect(grant).toMatchObject({ kind: 'granted', backendId: 'wait-a' })
    expect(Date.now() - releasedAt).toBeLessThan(500)
    // The object's own count of the wait, from when the call reached it (on a loaded machine that
    // can be tens of ms after it was made, so it is bounded by the caller's view, not by the sleep).
    if (grant.kind === 'granted') {
      expect(grant.waitedMs).toBeGreaterThan(0)
      expect(grant.waitedMs).toBeLessThanOrEqual(Date.now() - calledAt)
    }
    expect(only(await ledger().counts(), ['wait-a'])).toEqual({ 'wait-a': 1 })
  })

  it('hands freed slots out by priority class first, then fairly between keys, whatever the arrival order', async () => {
    const free = await filled('order-a')
    const served: string[] = []
    const wait = (name: string, fields: Partial<SlotTicket>) =>
      ledger()
        .acquire(ticket('order-a', { id: name, ...fields }))
        .then(async (grant) => {
          served.push(name)
          if (grant.kind === 'granted') await ledger().release('order-a', name)
        })
    const all = [
      wait('batch-1', { priority: 'batch', keyId: 'bulk' }),
      wait('flood-1', { keyId: 'flood' }),
      wait('flood-2', { keyId: 'flood' }),
      wait('flood-3', { keyId: 'flood' }),
      wait('single-1', { keyId: 'single' }),
      wait('chat-1', { priority: 'interactive', keyId: 'chat' }),
    ]
    await new Promise((resolve) => setTimeout(resolve, 50))
    // Interactive may hold one more than the slots: it was granted at once, into vLLM's queue.
    expect(served).toEqual(['chat-1'])
    await free()
    await Promise.all(all)
    expect(served).toEqual(['chat-1', 'flood-1', 'single-1', 'flood-2', 'flood-3', 'batch-1'])
  })

  it('lets a request that left go: out of the queue if it waits, its lease released if it was granted', async () => {
    const free = await filled('leave-a')
    const left = ticket('leave-a')
    const waiting = ledger().acquire(left)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(await ledger().waiting()).toBeGreaterThanOrEqual(1)
    await ledger().leave(left.id)
    expect(await waiting).toEqual({ kind: 'left' })
    expect(await ledger().waiting()).toBe(0)
    await free()
    const granted = ticket('leave-a')
    expect(await ledger().acquire(granted)).toMatchObject({ kind: 'granted' })
    await ledger().leave(granted.id)
    expect(only(await ledger().counts(), ['leave-a'])).toEqual({ 'leave-a': 0 })
  })

  it('refuses a request at its deadline with queue_timeout, and one that could not be served within it at once with queue_full', async () => {
    const free = await filled('late-a')
    const startedAt = Date.now()
    const timedOut = await ledger().acquire(ticket('late-a', { deadlineMs: 150 }))
    expect(timedOut).toMatchObject({ kind: 'refused', reason: 'queue_timeout' })
    expect(Date.now() - startedAt).toBeGreaterThanOrEqual(140)
    if (timedOut.kind === 'refused') expect(timedOut.retryAfterS).toBeGreaterThanOrEqual(1)
    // One waits; the next has it ahead, which the slot cannot serve within a 1 ms deadline.
    const first = ledger().acquire(ticket('late-a', { deadlineMs: 1_000 }))
    const refused = await ledger().acquire(ticket('late-a', { deadlineMs: 1 }))
    expect(refused).toMatchObject({ kind: 'refused', reason: 'queue_full', waitedMs: 0 })
    await free()
    const granted = await first
    expect(granted).toMatchObject({ kind: 'granted' })
    await ledger().release('late-a', 'never-mind')
  })
})

describe("an isolate's wait in the edge queue", () => {
  const place = { keyId: 'key-q', priority: 'standard' as const, weight: 1 }

  it('is granted a lease it releases like a claim', async () => {
    const slots = slotLedger(env, true, new LiveStats())
    const acquired = await slots?.acquire(place, [{ id: 'isolate-q', maxConcurrency: 1 }], new AbortController().signal)
    expect(acquired).toMatchObject({ kind: 'granted', backendId: 'isolate-q' })
    expect(only(await ledger().counts(), ['isolate-q'])).toEqual({ 'isolate-q': 1 })
    if (acquired?.kind === 'granted') acquired.claim.release()
    await vi.waitFor(async () => expect(only(await ledger().counts(), ['isolate-q'])).toEqual({ 'isolate-q': 0 }))
  })

  it('leaves the queue when its signal fires, and the next request takes the slot', async () => {
    await ledger().claim('isolate-leave', 'running')
    const slots = slotLedger(env, true, new LiveStats())
    const offers = [{ id: 'isolate-leave', maxConcurrency: 1 }]
    const gone = new AbortController()
    const waiting = slots?.acquire(place, offers, gone.signal)
    const after = slots?.acquire({ ...place, keyId: 'key-r' }, offers, new AbortController().signal)
    await new Promise((resolve) => setTimeout(resolve, 50))
    gone.abort()
    expect(await waiting).toMatchObject({ kind: 'left' })
    await ledger().release('isolate-leave', 'running')
    // Served although the one that left was ahead of it.
    expect(await after).toMatchObject({ kind: 'granted', backendId: 'isolate-leave' })
  })
})

describe('the interactive reserve on the ledger', () => {
  // An instance of its own: the reserve is fleet-wide, and other tests' interactive requests would count.
  const own = () => env.BACKEND_SLOTS.get(env.BACKEND_SLOTS.idFromName('interactive-reserve-test'))
  const offers = [{ id: 'reserve-a', maxConcurrency: 8 }]
  const batch = (id: string): SlotTicket => ({ id, keyId: 'bulk', priority: 'batch', weight: 1, offers, deadlineMs: 5_000 })

  it('keeps as many slots free of batch work as the fleet recently held interactive requests, and hands them back as they end', async () => {
    for (let i = 0; i < 3; i++) await own().claim('reserve-a', `chat-${i}`, { placements: [], since: null }, 'interactive')
    await own().claim('reserve-a', 'standard-0')
    // 8 slots, 4 taken, 3 of them interactive: batch may take one, not the three kept.
    expect(await own().acquire(batch('batch-0'))).toMatchObject({ kind: 'granted' })
    const waiting = own().acquire(batch('batch-1'))
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await own().waiting()).toBe(1)
    // A standard request ends: 4 free, one more than the reserve.
    await own().release('reserve-a', 'standard-0')
    expect(await waiting).toMatchObject({ kind: 'granted' })
    // The interactive requests end too: the reserve stays 3 (the recent peak), so 3 slots stay free.
    await Promise.all(['chat-0', 'chat-1', 'chat-2'].map((id) => own().release('reserve-a', id)))
    for (let i = 2; i < 5; i++) expect(await own().acquire(batch(`batch-${i}`))).toMatchObject({ kind: 'granted' })
    expect(await own().acquire({ ...batch('batch-5'), deadlineMs: 100 })).toMatchObject({ kind: 'refused' })
    await Promise.all(Array.from({ length: 5 }, (_, i) => own().release('reserve-a', `batch-${i}`)))
  })

  it('never keeps more than half of the slots from batch work', async () => {
    for (let i = 0; i < 8; i++) await own().claim('reserve-a', `spike-${i}`, { placements: [], since: null }, 'interactive')
    await Promise.all(Array.from({ length: 8 }, (_, i) => own().release('reserve-a', `spike-${i}`)))
    // The peak of 8 is remembered, but batch may still take up to half.
    for (let i = 0; i < 4; i++) expect(await own().acquire(batch(`half-${i}`))).toMatchObject({ kind: 'granted' })
    const refused = await own().acquire({ ...batch('over-half'), deadlineMs: 100 })
    expect(refused).toMatchObject({ kind: 'refused' })
    await Promise.all(Array.from({ length: 4 }, (_, i) => own().release('reserve-a', `half-${i}`)))
  })
})
