// The ranking with the fleet-wide load view (src/fleet/load-view.ts): fresh, stale and unknown.
import { describe, expect, it } from 'vitest'
import { LiveStats } from '../../src/fleet/live-stats.ts'
import type { BackendLoad, FleetLoadView } from '../../src/fleet/load-view.ts'
import type { BackendRecord, HealthSnapshot } from '../../src/fleet/records.ts'
import { rankBackends, type RoutingPolicy, type SelectionInput } from '../../src/fleet/select.ts'

const backend = (id: string): BackendRecord => ({
  id,
  url: `http://${id}.internal:8000`,
  weight: 1,
  maxConcurrency: 8,
  region: null,
  state: 'active',
})

// Live stats stamp a request's start with the real clock, so the view's times are taken from it too.
const now = Date.now()
const entry = (running: number | null, waiting: number | null, ageMs = 500): BackendLoad => ({
  running,
  waiting,
  kvCacheUsage: running === null ? null : running / 8,
  scrapedAt: now - ageMs,
})
const view = (backends: Record<string, BackendLoad>): FleetLoadView => ({ at: now - 500, backends })

function input(fleetLoad: FleetLoadView | null, policy: RoutingPolicy = 'smart', health: HealthSnapshot | null = null) {
  const live = new LiveStats({
    consecutiveFailures: 2,
    failureRate: 0.5,
    minOutcomes: 10,
    windowMs: 30_000,
    cooldownMs: 1_000,
    consecutiveTimeouts: 2,
    stallMs: 1_000,
  })
  const selection: SelectionInput = {
    backends: [backend('a'), backend('b'), backend('c')],
    health,
    stats: (id) => live.of(id),
    prefixKey: null,
    fleetLoad,
    now,
    options: { policy, healthMaxAgeMs: 180_000, loadMaxAgeMs: 3_000, queueFactor: 2, affinityLoadBound: 1.25, defaultTtftMs: 1_000 },
  }
  return { selection, live }
}

const loads = (ranked: { backend: BackendRecord; load: number }[]) => Object.fromEntries(ranked.map((c) => [c.backend.id, c.load]))
const ids = (ranked: { backend: BackendRecord }[]) => ranked.map((c) => c.backend.id)

describe('rankBackends with a fresh fleet load view', () => {
  it('counts the requests other isolates sent: a backend this isolate never used can still be the busiest', () => {
    const { selection } = input(view({ a: entry(8, 4), b: entry(1, 0), c: entry(3, 0) }))
    const ranked = rankBackends(selection)
    expect(loads(ranked)).toEqual({ a: 12, b: 1, c: 3 })
    expect(ids(ranked)).toEqual(['b', 'c', 'a'])
  })

  it('leaves out a backend the view shows saturated, whatever the policy', () => {
    for (const policy of ['smart', 'weighted_random', 'round_robin'] as const) {
      const { selection } = input(view({ a: entry(8, 8), b: entry(0, 0), c: entry(0, 0) }), policy)
      expect(ids(rankBackends(selection)).sort()).toEqual(['b', 'c'])
    }
  })

  it('adds the requests this isolate started after the scrape, which the view cannot have seen', () => {
    const { selection, live } = input(view({ a: entry(2, 0, 1), b: entry(4, 0, 1), c: entry(4, 0, 1) }))
    live.of('a').inFlight += 3
    expect(loads(rankBackends(selection)).a).toBe(5)
    expect(ids(rankBackends(selection))[0]).not.toBe('a')
  })

  it('does not count twice the requests the view already includes', async () => {
    const { selection, live } = input(null)
    live.of('a').inFlight += 3
    // The clock moves on (workerd's advances across timers): the scrape comes after they started.
    await new Promise((resolve) => setTimeout(resolve, 5))
    const at = Date.now()
    const scraped = { ...selection, now: at, fleetLoad: { at, backends: { a: { ...entry(3, 1), scrapedAt: at } } } }
    expect(loads(rankBackends(scraped)).a).toBe(4)
  })

  it("does not count this isolate's requests that ended since the scrape", async () => {
    const { selection, live } = input(null)
    live.of('a').inFlight += 3
    await new Promise((resolve) => setTimeout(resolve, 5))
    const at = Date.now()
    await new Promise((resolve) => setTimeout(resolve, 5))
    live.of('a').inFlight -= 2
    // The view saw 3 of this isolate's and 2 of others'; 1 of this isolate's is left.
    const scraped = { ...selection, now: Date.now(), fleetLoad: { at, backends: { a: { ...entry(5, 0), scrapedAt: at } } } }
    expect(loads(rankBackends(scraped)).a).toBe(3)
  })
})

describe('rankBackends with a stale or unknown fleet load view', () => {
  it('treats a stale entry as unknown, not idle: the backend is assumed as loaded as the known ones', () => {
    const { selection } = input(view({ a: entry(0, 0, 10_000), b: entry(6, 0), c: entry(4, 0) }))
    const ranked = rankBackends(selection)
    expect(loads(ranked)).toEqual({ a: 5, b: 6, c: 4 })
    expect(ids(ranked)[0]).toBe('c')
  })

  it('treats an entry without counts (a failed scrape) as unknown too', () => {
    const { selection } = input(view({ a: entry(null, null), b: entry(6, 0), c: entry(2, 0) }))
    expect(loads(rankBackends(selection))).toEqual({ a: 4, b: 6, c: 2 })
  })

  it('keeps an unknown backend at its own in-flight count when that is above the fleet mean', () => {
    const { selection, live } = input(view({ b: entry(1, 0), c: entry(1, 0) }))
    live.of('a').inFlight += 5
    expect(loads(rankBackends(selection))).toEqual({ a: 5, b: 1, c: 1 })
  })

  it('falls back to its own counts and the cron snapshot when the whole view is stale or absent', () => {
    const health: HealthSnapshot = {
      at: now,
      backends: { a: { healthy: true, checkedAt: now, running: 8, waiting: 3, kvCacheUsage: 1, problem: null } },
    }
    for (const fleetLoad of [null, view({ a: entry(0, 0, 5_000), b: entry(7, 7, 5_000), c: entry(7, 7, 5_000) })]) {
      const { selection, live } = input(fleetLoad, 'smart', health)
      live.of('b').inFlight += 1
      expect(loads(rankBackends(selection))).toEqual({ a: 3, b: 1, c: 0 })
    }
  })

  it('treats an entry stamped too far in the future (clock skew) as unknown', () => {
    const { selection } = input(view({ a: { ...entry(0, 0), scrapedAt: now + 60_000 }, b: entry(2, 0), c: entry(2, 0) }))
    expect(loads(rankBackends(selection)).a).toBe(2)
  })
})

describe('rankBackends with the slot ledger (src/fleet/slots.ts)', () => {
  it("counts the other isolates' requests from the ledger's last answer when it is newer than the scrape", () => {
    const { selection, live } = input(view({ a: entry(1, 0), b: entry(1, 0), c: entry(1, 0) }))
    live.of('a').inFlight += 1
    // The ledger counted 7 at a, 1 of them this isolate's: 6 others', against 1 at the scrape.
    live.of('a').observeLedger(7, 1, now - 100)
    expect(loads(rankBackends(selection))).toEqual({ a: 7, b: 1, c: 1 })
    expect(ids(rankBackends(selection)).at(-1)).toBe('a')
  })

  it('keeps to the view when its scrape is newer than the ledger answer', () => {
    const { selection, live } = input(view({ a: entry(2, 0, 100), b: entry(1, 0), c: entry(1, 0) }))
    live.of('a').observeLedger(7, 0, now - 400)
    expect(loads(rankBackends(selection)).a).toBe(2)
  })

  it('treats a ledger answer older than loadMaxAgeMs like a stale view entry', () => {
    const { selection, live } = input(view({ a: entry(0, 0, 10_000), b: entry(4, 0), c: entry(6, 0) }))
    live.of('a').observeLedger(0, 0, now - 5_000)
    // Unknown, so as loaded as the known ones on average, not the idle the old answer said.
    expect(loads(rankBackends(selection)).a).toBe(5)
  })

  it('keeps the newest answer when answers arrive out of order', () => {
    const { selection, live } = input(null)
    live.of('a').observeLedger(5, 0, now - 10)
    live.of('a').observeLedger(1, 0, now - 20)
    expect(loads(rankBackends(selection)).a).toBe(5)
  })
})
