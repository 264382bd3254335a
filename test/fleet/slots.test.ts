// The fleet's slot ledger (src/durable/backend-slots.ts) as workerd runs it, and the isolate's
// side of it (src/fleet/slots.ts): claims, releases, counts, leases that are never released, and
// the conversation placements the claims carry between isolates.
import { runInDurableObject } from 'cloudflare:test'
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { LEASE_TTL_MS, type BackendSlots } from '../../src/durable/backend-slots.ts'
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
