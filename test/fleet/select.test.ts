import { describe, expect, it } from 'vitest'
import { LiveStats } from '../../src/fleet/live-stats.ts'
import type { BackendRecord, HealthSnapshot } from '../../src/fleet/records.ts'
import {
  MAX_EJECTED_SHARE,
  OWN_TTFT_SAMPLES_TRUSTED,
  prefixKeyOf,
  rankBackends,
  rankForQueue,
  type RoutingPolicy,
  type SelectionInput,
} from '../../src/fleet/select.ts'

const backend = (id: string, fields: Partial<BackendRecord> = {}): BackendRecord => ({
  id,
  url: `http://${id}.internal:8000`,
  weight: 1,
  maxConcurrency: 8,
  region: null,
  state: 'active',
  ...fields,
})

function input(
  backends: BackendRecord[],
  fields: Partial<SelectionInput> & { policy?: RoutingPolicy } = {},
): SelectionInput & { live: LiveStats } {
  const live = new LiveStats({
    consecutiveFailures: 2,
    failureRate: 0.5,
    minOutcomes: 10,
    windowMs: 30_000,
    cooldownMs: 1_000,
    stallMs: 1_000,
  })
  return {
    backends,
    health: null,
    stats: (id) => live.of(id),
    prefixKey: null,
    now: 1_000_000,
    options: {
      policy: fields.policy ?? 'smart',
      healthMaxAgeMs: 180_000,
      loadMaxAgeMs: 3_000,
      affinityLoadBound: 1.25,
      defaultTtftMs: 1_000,
    },
    live,
    ...fields,
  }
}

const ids = (ranked: { backend: BackendRecord }[]) => ranked.map((c) => c.backend.id)

describe('rankBackends', () => {
  it('puts draining backends after every active one', () => {
    expect(ids(rankBackends(input([backend('a', { state: 'draining' }), backend('b'), backend('c')])))).toEqual(['b', 'c', 'a'])
  })

  it('puts a stalled backend (a request unanswered past stallMs) after every other one, draining ones included, but keeps it', () => {
    const setup = input([backend('a'), backend('b', { state: 'draining' }), backend('c')], { policy: 'round_robin' })
    setup.live.of('a').circuit.attempt(1_000_000 - 1_000)
    expect(ids(rankBackends(setup)).at(-1)).toBe('a')
    expect(ids(rankBackends(setup))).toHaveLength(3)
  })

  it('leaves out a backend whose circuit is open, and one a fresh health snapshot calls unhealthy', () => {
    const health: HealthSnapshot = {
      at: 1_000_000,
      backends: { b: { healthy: false, checkedAt: 1_000_000, running: null, waiting: null, kvCacheUsage: null, problem: 'down' } },
    }
    const setup = input([backend('a'), backend('b'), backend('c')], { health })
    setup.live.of('a').circuit.failure(999_000)
    setup.live.of('a').circuit.failure(999_001)
    expect(ids(rankBackends(setup))).toEqual(['c'])
  })

  it('takes out at most half of the backends the probe calls up; past that it ranks them all as if nothing had been seen (panic)', () => {
    expect(MAX_EJECTED_SHARE).toBe(0.5)
    const setup = input([backend('a'), backend('b'), backend('c'), backend('d')])
    for (const id of ['a', 'b']) setup.live.of(id).circuit.eject(999_500)
    expect(ids(rankBackends(setup)).sort()).toEqual(['c', 'd'])
    setup.live.of('c').circuit.eject(999_500)
    expect(ids(rankBackends(setup)).sort()).toEqual(['a', 'b', 'c', 'd'])
  })

  it('counts stalls toward the bound with ejections: one ejected and two stalled of four is panic, and nobody is put last', () => {
    const setup = input([backend('a'), backend('b'), backend('c'), backend('d')], { policy: 'round_robin' })
    setup.live.of('a').circuit.eject(999_500)
    setup.live.of('b').circuit.attempt(1_000_000 - 1_000)
    expect(ids(rankBackends(setup)).at(-1)).toBe('b')
    expect(ids(rankBackends(setup))).not.toContain('a')
    setup.live.of('c').circuit.attempt(1_000_000 - 1_000)
    const lasts = new Set<string>()
    for (let turn = 0; turn < 4; turn++) {
      const ranked = ids(rankBackends(setup))
      expect(ranked.sort()).toEqual(['a', 'b', 'c', 'd'])
    }
    for (let turn = 0; turn < 4; turn++) lasts.add(ids(rankBackends(setup)).at(-1) as string)
    expect(lasts.size).toBeGreaterThan(1)
  })

  it('never answers with an empty ranking because of its own circuits: two backends both ejected are both tried', () => {
    const setup = input([backend('a'), backend('b')])
    setup.live.of('a').circuit.eject(999_500)
    expect(ids(rankBackends(setup))).toEqual(['b'])
    setup.live.of('b').circuit.eject(999_500)
    expect(ids(rankBackends(setup)).sort()).toEqual(['a', 'b'])
  })

  it('tries every backend when the health probe calls all of them down (its snapshot may be a minute old)', () => {
    const down = { healthy: false, checkedAt: 1_000_000, running: null, waiting: null, kvCacheUsage: null, problem: 'down' }
    const health: HealthSnapshot = { at: 1_000_000, backends: { a: down, b: down } }
    expect(ids(rankBackends(input([backend('a'), backend('b')], { health }))).sort()).toEqual(['a', 'b'])
  })

  it('gives a backend back its hashed share of new conversations as soon as its ejection ends, with no load at all', () => {
    const fleet = [backend('a'), backend('b'), backend('c'), backend('d')]
    const setup = input(fleet)
    setup.live.of('a').circuit.eject(1_000_000 - 1_000)
    const firstChoices = (now: number) =>
      Array.from({ length: 400 }, (_, conversation) => {
        const prefixKey = prefixKeyOf([{ content: `new conversation ${conversation} at ${now}` }])
        return ids(rankBackends({ ...setup, prefixKey, now }))[0]
      })
    // Ejected for the 1 s cool-down: none; once the health check at its end answered, about a quarter.
    expect(firstChoices(1_000_000 - 500).filter((id) => id === 'a')).toHaveLength(0)
    setup.live.of('a').circuit.checked(true, 1_000_000)
    expect(firstChoices(1_000_000).filter((id) => id === 'a').length).toBeGreaterThan(60)
  })

  it('ignores a health snapshot older than the allowed age', () => {
    const stale: HealthSnapshot = {
      at: 0,
      backends: { a: { healthy: false, checkedAt: 0, running: null, waiting: null, kvCacheUsage: null, problem: 'down' } },
    }
    expect(ids(rankBackends(input([backend('a')], { health: stale })))).toEqual(['a'])
  })

  it("leaves out backends full for the request's priority class, and returns nothing when all are", () => {
    const setup = input([backend('a'), backend('b')])
    // 8 slots: standard and batch fill them (8), interactive may queue one in vLLM (9).
    setup.live.of('a').inFlight = 8
    expect(ids(rankBackends(setup))).toEqual(['b'])
    expect(ids(rankBackends({ ...setup, priority: 'interactive' })).sort()).toEqual(['a', 'b'])
    setup.live.of('b').inFlight = 2
    const health: HealthSnapshot = {
      at: 1_000_000,
      backends: { b: { healthy: true, checkedAt: 1_000_000, running: 8, waiting: 6, kvCacheUsage: 0.9, problem: null } },
    }
    expect(rankBackends({ ...setup, health })).toEqual([])
    // What a request waiting at the edge may take: every backend in rotation, in the same order.
    expect(ids(rankForQueue({ ...setup, health })).sort()).toEqual(['a', 'b'])
  })

  it('calls a stalled backend full like any other: its count is requests it holds, and a full fleet queues at the edge', () => {
    const setup = input([backend('a'), backend('b')])
    setup.live.of('a').inFlight = 8
    setup.live.of('b').inFlight = 8
    expect(rankBackends(setup)).toEqual([])
    // Both lag: a request each waits past stallMs for headers, nothing newer answered.
    for (const id of ['a', 'b']) setup.live.of(id).circuit.attempt(1_000_000 - 1_000)
    expect(rankBackends(setup)).toEqual([])
    expect(ids(rankForQueue(setup)).sort()).toEqual(['a', 'b'])
  })

  it('prefers low load and low recent time to first token, and a free sequence slot above all', () => {
    const setup = input([backend('slow'), backend('busy'), backend('fast')])
    setup.live.of('slow').observeTtft(900, 999_000)
    setup.live.of('busy').observeTtft(100, 999_000)
    setup.live.of('busy').inFlight = 4
    setup.live.of('fast').observeTtft(100, 999_000)
    expect(ids(rankBackends(setup))).toEqual(['fast', 'busy', 'slow'])
    // Full (8 of 8 sequences): a request there would queue behind a whole generation. Only an
    // interactive request may still go there (vLLM's queue, where it goes first), and only last.
    setup.live.of('busy').inFlight = 8
    expect(ids(rankBackends({ ...setup, priority: 'interactive' }))).toEqual(['fast', 'slow', 'busy'])
  })

  it('sends every turn of a conversation to the same backend, and conversations spread over the fleet', () => {
    const fleet = [backend('a'), backend('b'), backend('c'), backend('d')]
    const chosen = new Map<string, number>()
    for (let conversation = 0; conversation < 400; conversation++) {
      const prefixKey = prefixKeyOf([{ content: `conversation ${conversation}: hello` }])
      const first = ids(rankBackends(input(fleet, { prefixKey })))[0]!
      expect(ids(rankBackends(input(fleet, { prefixKey })))[0]).toBe(first)
      chosen.set(first, (chosen.get(first) ?? 0) + 1)
    }
    for (const count of chosen.values()) expect(count).toBeGreaterThan(60)
  })

  it('follows the backend that served the conversation last, which holds its prefix, over the hash', () => {
    const fleet = [backend('a'), backend('b'), backend('c')]
    const prefixKey = prefixKeyOf([{ content: 'a conversation moved by failover' }])
    const hashed = ids(rankBackends(input(fleet, { prefixKey })))[0]
    const elsewhere = ['a', 'b', 'c'].find((id) => id !== hashed)
    const setup = input(fleet, { prefixKey })
    setup.live.remember(prefixKey!, elsewhere!)
    expect(ids(rankBackends({ ...setup, recall: (key) => setup.live.recall(key) }))[0]).toBe(elsewhere)
  })

  it('gives up affinity when the preferred backend is full or loaded well above the mean', () => {
    const fleet = [backend('a'), backend('b')]
    const prefixKey = prefixKeyOf([{ content: 'a hot prefix' }])
    const preferred = ids(rankBackends(input(fleet, { prefixKey })))[0]!
    const other = preferred === 'a' ? 'b' : 'a'
    const setup = input(fleet, { prefixKey })
    setup.live.of(preferred).inFlight = 6
    setup.live.of(other).inFlight = 1
    expect(ids(rankBackends(setup))[0]).toBe(other)
  })

  it('keeps a remembered placement loaded above the mean while it has a free slot, unlike a hashed one', () => {
    const fleet = [backend('a'), backend('b')]
    const prefixKey = prefixKeyOf([{ content: 'a conversation whose backend got busy' }])
    const hashed = ids(rankBackends(input(fleet, { prefixKey })))[0]!
    const other = hashed === 'a' ? 'b' : 'a'
    const setup = input(fleet, { prefixKey })
    setup.live.of(other).inFlight = 6
    setup.live.of(hashed).inFlight = 1
    // Remembered on the busy one: the whole conversation is cached there.
    setup.live.remember(prefixKey!, other)
    const ranked = { ...setup, recall: (key: string) => setup.live.recall(key) }
    expect(ids(rankBackends(ranked))[0]).toBe(other)
    setup.live.of(other).inFlight = 8
    expect(ids(rankBackends(ranked))[0]).toBe(hashed)
  })

  it('never waits for a slot for affinity: a preferred backend with every slot taken loses to one with a free slot', () => {
    const fleet = [backend('a'), backend('b')]
    const prefixKey = prefixKeyOf([{ content: 'a conversation whose backend is just full' }])
    const preferred = ids(rankBackends(input(fleet, { prefixKey })))[0]!
    const other = preferred === 'a' ? 'b' : 'a'
    const setup = input(fleet, { prefixKey })
    // Full (8 of 8), yet within the load bound of the mean (8 vs 7): only the free slot decides.
    setup.live.of(preferred).inFlight = 8
    setup.live.of(other).inFlight = 7
    expect(ids(rankBackends(setup))[0]).toBe(other)
    setup.live.of(preferred).inFlight = 7
    expect(ids(rankBackends(setup))[0]).toBe(preferred)
  })

  it('gives up affinity, remembered or hashed, for a straggler whose median TTFT is several times that of a free backend, not for one a little slower or only queued at times', () => {
    const fleet = [backend('a'), backend('b')]
    const prefixKey = prefixKeyOf([{ content: 'a conversation placed on a backend that turned slow' }])
    const hashed = ids(rankBackends(input(fleet, { prefixKey })))[0]!
    const other = hashed === 'a' ? 'b' : 'a'
    const observe = (setup: ReturnType<typeof input>, id: string, ms: number) => {
      for (let i = 0; i < OWN_TTFT_SAMPLES_TRUSTED; i++) setup.live.of(id).observeTtft(ms, 999_000)
    }
    const remembered = input(fleet, { prefixKey })
    remembered.live.remember(prefixKey!, hashed)
    const ranked = { ...remembered, recall: (key: string) => remembered.live.recall(key) }
    observe(remembered, hashed, 300)
    observe(remembered, other, 40)
    expect(ids(rankBackends(ranked))[0]).toBe(other)
    const hashedOnly = input(fleet, { prefixKey })
    observe(hashedOnly, hashed, 300)
    observe(hashedOnly, other, 40)
    expect(ids(rankBackends(hashedOnly))[0]).toBe(other)
    // Slower, but not by the factor and the gap both: the cached prefix is worth keeping.
    const close = input(fleet, { prefixKey })
    observe(close, hashed, 90)
    observe(close, other, 20)
    expect(ids(rankBackends(close))[0]).toBe(hashed)
    // A loaded backend: most turns fast, a few queued behind a full batch. Its mean (about 400 ms)
    // is over the bar, its median (30 ms) is not: affinity holds.
    const queued = input(fleet, { prefixKey })
    for (let i = 0; i < 12; i++) queued.live.of(hashed).observeTtft(i < 9 ? 30 : 1_500, 999_000)
    observe(queued, other, 25)
    expect(ids(rankBackends(queued))[0]).toBe(hashed)
    // The fast one full: nothing free to go to, and affinity holds.
    observe(remembered, hashed, 300)
    remembered.live.of(other).inFlight = 8
    expect(ids(rankBackends(ranked))[0]).toBe(hashed)
    // Too few own samples and no fleet-wide figure: not judged.
    const unmeasured = input(fleet, { prefixKey })
    unmeasured.live.of(hashed).observeTtft(900, 999_000)
    observe(unmeasured, other, 20)
    expect(ids(rankBackends(unmeasured))[0]).toBe(hashed)
  })

  it('round robin rotates; weighted random follows the weights', () => {
    const rr = [0, 1, 2].map(() => ids(rankBackends(input([backend('a'), backend('b'), backend('c')], { policy: 'round_robin' })))[0])
    expect(new Set(rr).size).toBe(3)
    const counts = { a: 0, b: 0 }
    for (let i = 0; i < 2_000; i++) {
      const first = ids(rankBackends(input([backend('a', { weight: 3 }), backend('b')], { policy: 'weighted_random' })))[0] as 'a' | 'b'
      counts[first]++
    }
    expect(counts.a / 2_000).toBeGreaterThan(0.68)
    expect(counts.a / 2_000).toBeLessThan(0.82)
  })
})
