import { describe, expect, it } from 'vitest'
import type { HedgeConfig } from '../../src/config.ts'
import { BackendLiveStats } from '../../src/fleet/live-stats.ts'
import { DEFAULT_CIRCUIT } from '../../src/fleet/circuit.ts'
import { HedgeBudget, MIN_SAMPLES, hedgeDelayMs } from '../../src/relay/hedge.ts'

const config: HedgeConfig = { enabled: true, percentile: 95, minDelayMs: 50, maxDelayMs: 2000, maxShare: 0.05 }

describe('the hedge deadline', () => {
  it('is the max bound while the backend has fewer than MIN_SAMPLES recent first tokens', () => {
    const stats = new BackendLiveStats(DEFAULT_CIRCUIT)
    for (let i = 0; i < MIN_SAMPLES - 1; i++) stats.observeTtft(100, 1_000)
    expect(hedgeDelayMs([stats], config, 1_000)).toBe(2000)
    expect(hedgeDelayMs([], config, 1_000)).toBe(2000)
  })

  it("is the backend's recent TTFT at the configured percentile, within the bounds", () => {
    const stats = new BackendLiveStats(DEFAULT_CIRCUIT)
    // 19 fast first tokens and one slow: the 95th percentile (nearest rank) is the 19th, 190 ms.
    for (let i = 1; i <= 19; i++) stats.observeTtft(i * 10, 1_000)
    stats.observeTtft(5_000, 1_000)
    expect(hedgeDelayMs([stats], config, 1_000)).toBe(190)
    expect(hedgeDelayMs([stats], { ...config, percentile: 100 }, 1_000)).toBe(2000)
    expect(hedgeDelayMs([stats], { ...config, percentile: 5, minDelayMs: 60 }, 1_000)).toBe(60)
  })

  it("is the lower of the chosen backend's and the hedge backend's: a backend that is always slow is still hedged", () => {
    const straggler = new BackendLiveStats(DEFAULT_CIRCUIT)
    const fast = new BackendLiveStats(DEFAULT_CIRCUIT)
    for (let i = 0; i < 10; i++) {
      straggler.observeTtft(300, 1_000)
      fast.observeTtft(80, 1_000)
    }
    expect(hedgeDelayMs([straggler, fast], config, 1_000)).toBe(80)
    expect(hedgeDelayMs([fast, straggler], config, 1_000)).toBe(80)
    // A hedge backend with too few samples says nothing.
    expect(hedgeDelayMs([straggler, new BackendLiveStats(DEFAULT_CIRCUIT)], config, 1_000)).toBe(300)
  })
})

describe('the hedge budget', () => {
  it('allows hedges up to its share of the requests in the window', () => {
    const budget = new HedgeBudget(0.05)
    for (let i = 0; i < 19; i++) budget.request(1_000)
    expect(budget.tryHedge(1_000)).toBe(false)
    budget.request(1_000)
    expect(budget.tryHedge(1_000)).toBe(true)
    expect(budget.tryHedge(1_000)).toBe(false)
    for (let i = 0; i < 20; i++) budget.request(2_000)
    expect(budget.tryHedge(2_000)).toBe(true)
  })

  it('forgets requests and hedges older than its one-minute window', () => {
    const budget = new HedgeBudget(0.5)
    for (let i = 0; i < 4; i++) budget.request(1_000)
    expect(budget.tryHedge(1_000)).toBe(true)
    expect(budget.tryHedge(1_000)).toBe(true)
    expect(budget.tryHedge(1_000)).toBe(false)
    // A minute and more later the old requests no longer pay for hedges, nor do old hedges count.
    expect(budget.tryHedge(70_000)).toBe(false)
    budget.request(70_000)
    budget.request(70_000)
    expect(budget.tryHedge(70_000)).toBe(true)
  })

  it('never hedges with a share of 0', () => {
    const budget = new HedgeBudget(0)
    for (let i = 0; i < 1000; i++) budget.request(1_000)
    expect(budget.tryHedge(1_000)).toBe(false)
  })
})
