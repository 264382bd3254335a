import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import { StaleCache, type Background } from '../../src/cache/stale-cache.ts'
import { clearFleetCache, loadFleet, FLEET_STALE_MAX_MS } from '../../src/fleet/registry.ts'
import { backendRecord, clearFleet, writeFleet } from '../support/fleet.ts'

/** A background that keeps what it was given, so a test can wait for the re-read to land. */
function collectingBackground(): { background: Background; settled: () => Promise<unknown> } {
  const work: Promise<unknown>[] = []
  return { background: (promise) => work.push(promise), settled: () => Promise.all(work) }
}

describe('StaleCache', () => {
  const owner = {}
  const counting = () => {
    let reads = 0
    return { cache: new StaleCache<object, number>(async () => ++reads), reads: () => reads }
  }

  it('answers from memory within the TTL', async () => {
    const { cache, reads } = counting()
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 0 })).toBe(1)
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 99 })).toBe(1)
    expect(reads()).toBe(1)
  })

  it('past the TTL serves the old value at once and re-reads it once in the background', async () => {
    let reads = 0
    let open = (): void => {}
    // The re-read waits on a gate, as a KV read takes a while: requests meanwhile get the old value.
    const cache = new StaleCache<object, number>(async () => {
      if (++reads > 1) await new Promise<void>((resolve) => (open = resolve))
      return reads
    })
    const { background, settled } = collectingBackground()
    await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 0 })
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 150 })).toBe(1)
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 160 })).toBe(1)
    open()
    await settled()
    expect(reads).toBe(2)
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 170 })).toBe(2)
  })

  it('waits for the read past the stale bound, or when nothing can run after the response', async () => {
    const { cache } = counting()
    const { background } = collectingBackground()
    await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 0 })
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 150 })).toBe(2)
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 150 + 1100 })).toBe(3)
  })

  it('gives a caller nothing older than it, or whoever read the value, allows', async () => {
    const { cache } = counting()
    const { background } = collectingBackground()
    await cache.get(owner, { ttlMs: 10_000, staleMaxMs: 1000, now: 0 })
    expect(await cache.get(owner, { ttlMs: 50, staleMaxMs: 0, background, now: 60 })).toBe(2)
    // Read by a caller that allows no stale value: another caller past that reader's TTL waits too.
    expect(await cache.get(owner, { ttlMs: 10_000, staleMaxMs: 60_000, background, now: 120 })).toBe(3)
  })

  it('keeps the stale value when a background re-read fails, and tries again on a later request', async () => {
    let reads = 0
    const cache = new StaleCache<object, number>(async () => {
      reads++
      if (reads === 2) throw new Error('KV unavailable')
      return reads
    })
    const { background, settled } = collectingBackground()
    await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, now: 0 })
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 150 })).toBe(1)
    await settled().catch(() => {})
    expect(await cache.get(owner, { ttlMs: 100, staleMaxMs: 1000, background, now: 160 })).toBe(1)
    await settled().catch(() => {})
    expect(reads).toBe(3)
  })
})

describe('the fleet record in a warm isolate', () => {
  afterEach(async () => {
    await clearFleet()
    clearFleetCache(env.FLEET)
  })

  it('is served from memory past its TTL while KV is re-read after the response, then the new record is used', async () => {
    clearFleetCache(env.FLEET)
    await writeFleet([backendRecord(0)])
    const first = await loadFleet(env.FLEET, [], 100, { now: 0 })
    expect(first.backends.map((b) => b.id)).toEqual([backendRecord(0).id])

    await writeFleet([backendRecord(1)])
    const { background, settled } = collectingBackground()
    const stale = await loadFleet(env.FLEET, [], 100, { now: 150, background })
    expect(stale.backends.map((b) => b.id)).toEqual([backendRecord(0).id])
    await settled()
    const fresh = await loadFleet(env.FLEET, [], 100, { now: 160, background })
    expect(fresh.backends.map((b) => b.id)).toEqual([backendRecord(1).id])
  })

  it('is read before routing once it is older than its TTL plus the stale bound', async () => {
    clearFleetCache(env.FLEET)
    await writeFleet([backendRecord(0)])
    await loadFleet(env.FLEET, [], 100, { now: 0 })
    await writeFleet([backendRecord(2)])
    const { background } = collectingBackground()
    const late = await loadFleet(env.FLEET, [], 100, { now: 100 + FLEET_STALE_MAX_MS + 1, background })
    expect(late.backends.map((b) => b.id)).toEqual([backendRecord(2).id])
  })
})
