import { describe, expect, it } from 'vitest'
import type { PriorityClass } from '../../src/auth/key-record.ts'
import {
  FairQueue,
  InteractiveReserve,
  MAX_WAITING,
  RATE_WINDOW_MS,
  RESERVE_WINDOW_MS,
  ReleaseRate,
  reservedSlots,
  slotLimit,
  waitEstimate,
} from '../../src/fleet/edge-queue.ts'

let serial = 0
function add(queue: FairQueue<null>, keyId: string, priority: PriorityClass = 'standard', weight = 1, now = 0) {
  return queue.add({ id: `${keyId}-${serial++}`, keyId, priority, weight, value: null }, now)
}

/** Takes every waiting request out in the queue's order, naming each by its key. */
function drain(queue: FairQueue<null>): string[] {
  const order: string[] = []
  for (let next = queue.next(() => true); next; next = queue.next(() => true)) order.push(next.keyId)
  return order
}

describe('slotLimit', () => {
  it("fills a backend's slots for standard and batch, and gives interactive an eighth more (at least one) in vLLM's queue", () => {
    expect([slotLimit(8, 'batch'), slotLimit(8, 'standard'), slotLimit(8, 'interactive')]).toEqual([8, 8, 9])
    expect(slotLimit(256, 'interactive')).toBe(288)
    expect(reservedSlots(1)).toBe(1)
  })
})

describe('InteractiveReserve', () => {
  it('keeps the most interactive requests held at once over the last ten seconds, and nothing once they are gone', () => {
    const reserve = new InteractiveReserve()
    expect(reserve.slots(0)).toBe(0)
    reserve.held(3, 0)
    reserve.held(9, 2_000)
    reserve.held(1, 4_000)
    expect(reserve.slots(5_000)).toBe(9)
    // The peak ages out with its second; what is held now always counts.
    expect(reserve.slots(2_000 + RESERVE_WINDOW_MS + 1_000)).toBe(1)
    expect(reserve.slots(4_000 + RESERVE_WINDOW_MS + 1_000)).toBe(1)
    reserve.held(0, 16_000)
    expect(reserve.slots(16_000)).toBe(0)
  })
})

describe('FairQueue', () => {
  it('serves every waiting request of a higher class before any of a lower one, whatever their arrival', () => {
    const queue = new FairQueue<null>()
    add(queue, 'bulk', 'batch')
    add(queue, 'app', 'standard')
    add(queue, 'chat', 'interactive')
    add(queue, 'bulk', 'batch')
    add(queue, 'chat', 'interactive')
    expect(drain(queue)).toEqual(['chat', 'chat', 'app', 'bulk', 'bulk'])
  })

  it('takes turns between keys of one class: a key with fifty waiting does not go fifty times before a key with one', () => {
    const queue = new FairQueue<null>()
    for (let i = 0; i < 50; i++) add(queue, 'flood')
    add(queue, 'single')
    const order = drain(queue)
    expect(order.indexOf('single')).toBeLessThanOrEqual(1)
    expect(order).toHaveLength(51)
  })

  it('shares by weight: a key of weight 2 is served twice as often as a key of weight 1 while both wait', () => {
    const queue = new FairQueue<null>()
    for (let i = 0; i < 30; i++) {
      add(queue, 'heavy', 'standard', 2)
      add(queue, 'light', 'standard', 1)
    }
    const firstThirty = drain(queue).slice(0, 30)
    const heavy = firstThirty.filter((key) => key === 'heavy').length
    expect(heavy).toBe(20)
  })

  it('saves no credit for a key that was idle: coming back, it takes turns from now, not from when it left', () => {
    const queue = new FairQueue<null>()
    add(queue, 'early')
    expect(drain(queue)).toEqual(['early'])
    for (let i = 0; i < 10; i++) add(queue, 'busy')
    drain(queue).slice(0, 5)
    for (let i = 0; i < 10; i++) add(queue, 'busy')
    add(queue, 'early')
    add(queue, 'early')
    add(queue, 'early')
    const order = drain(queue)
    // Alternates with busy from here on, rather than going three times in a row on old credit.
    expect(order.slice(0, 6).filter((key) => key === 'early').length).toBeLessThanOrEqual(3)
    expect(order.slice(0, 2)).toContain('busy')
  })

  it('keeps arrival order within a key', () => {
    const queue = new FairQueue<null>()
    const first = add(queue, 'k')
    const second = add(queue, 'k')
    expect(queue.next(() => true)?.id).toBe(first.id)
    expect(queue.next(() => true)?.id).toBe(second.id)
  })

  it('passes over a request that cannot be placed and serves the next key that can', () => {
    const queue = new FairQueue<null>()
    const stuck = add(queue, 'a')
    const placeable = add(queue, 'b')
    expect(queue.next((waiter) => waiter.id !== stuck.id)?.id).toBe(placeable.id)
    expect(queue.next(() => false)).toBeNull()
    expect(queue.size).toBe(1)
  })

  it('counts who is ahead: every higher class and the earlier tags of its own', () => {
    const queue = new FairQueue<null>()
    add(queue, 'chat', 'interactive')
    add(queue, 'a')
    add(queue, 'a')
    add(queue, 'bulk', 'batch')
    const b = add(queue, 'b')
    // chat, then a's first (same tag as b's, not smaller: ties are not ahead).
    expect(queue.ahead(b)).toBe(1)
    const late = add(queue, 'a')
    expect(queue.ahead(late)).toBe(4)
  })

  it('removes a request that left, wherever it waits', () => {
    const queue = new FairQueue<null>()
    const left = add(queue, 'a')
    add(queue, 'a')
    expect(queue.remove(left.id)).toBe(true)
    expect(queue.remove(left.id)).toBe(false)
    expect(queue.get(left.id)).toBeUndefined()
    expect(queue.size).toBe(1)
    expect(drain(queue)).toEqual(['a'])
  })

  it('names the newest request of the lowest class below a priority as the one to displace', () => {
    const queue = new FairQueue<null>()
    add(queue, 'app', 'standard', 1, 1)
    add(queue, 'bulk', 'batch', 1, 2)
    const newest = add(queue, 'bulk2', 'batch', 1, 3)
    expect(queue.displaceable('interactive')?.id).toBe(newest.id)
    expect(queue.displaceable('batch')).toBeNull()
    drain(queue)
    add(queue, 'app', 'standard')
    expect(queue.displaceable('standard')).toBeNull()
    expect(queue.displaceable('interactive')?.keyId).toBe('app')
  })

  it('holds no state for keys that stopped waiting (bounded by who waits, not who ever did)', () => {
    const queue = new FairQueue<null>()
    for (let i = 0; i < 1_000; i++) add(queue, `key-${i}`)
    drain(queue)
    add(queue, 'last')
    drain(queue)
    // One more pass over the lanes drops every idle one; a fresh key then starts at the class's time.
    expect(queue.next(() => true)).toBeNull()
    expect(queue.size).toBe(0)
    expect(MAX_WAITING).toBeGreaterThan(1_000)
  })
})

describe('waitEstimate', () => {
  it('fits a request whose queue ahead is served within its deadline at the current rate', () => {
    expect(waitEstimate(100, 10, 32, 20_000)).toEqual({ fits: true, retryAfterS: 1 })
  })

  it('refuses one that would wait past it, with Retry-After when the excess would be served', () => {
    expect(waitEstimate(300, 10, 32, 20_000)).toEqual({ fits: false, retryAfterS: 10 })
    expect(waitEstimate(100_000, 10, 32, 20_000).retryAfterS).toBe(60)
  })

  it("takes up to one round of the fleet's slots while no release rate is known", () => {
    expect(waitEstimate(31, null, 32, 20_000).fits).toBe(true)
    expect(waitEstimate(32, null, 32, 20_000).fits).toBe(false)
  })
})

describe('ReleaseRate', () => {
  it('counts releases per second over the last minute, and knows none from one', () => {
    const rate = new ReleaseRate()
    rate.released(0)
    expect(rate.perSecond(0)).toBeNull()
    for (let at = 100; at <= 5_000; at += 100) rate.released(at)
    expect(rate.perSecond(5_000)).toBeCloseTo(10.2, 1)
    // Still known 30 s later (a fleet of long generations), gone after the minute.
    expect(rate.perSecond(35_000)).toBeCloseTo(51 / 35, 2)
    expect(rate.perSecond(RATE_WINDOW_MS + 6_000)).toBeNull()
  })
})
