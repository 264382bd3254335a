// The key's pause for slow requests, in its ledger (src/limits/pause.ts): request_too_slow endings
// counted, the pause, its doubling and cap, and its storage.
import { env } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import { describe, expect, it } from 'vitest'
import { END_REASONS, type EndReason } from '../../src/ending.ts'
import { FLUSH_MS, KeyLimiter } from '../../src/durable/key-limiter.ts'
import { claimHeadroom, rememberDecision } from '../../src/limits/headroom.ts'
import { Ledger, type AdmitInput, type EffectiveLimits, type LedgerStore, type UsageTotals } from '../../src/limits/ledger.ts'
import { PAUSE_MAX_MS, PAUSE_MS, PAUSE_RESET_MS, SLOW_WINDOW_MS, type SlowState } from '../../src/limits/pause.ts'
import { keyWithLimits } from '../support/limits.ts'

const limits: EffectiveLimits = {
  requestsPerMinute: 1_000,
  tokensPerMinute: 1_000_000,
  concurrentStreams: 100,
  concurrentStreamsPerIp: null,
}
const nothing = { promptTokens: 0, completionTokens: 0 }
let seq = 0
const ask = (): AdmitInput => ({ leaseId: `lease-${seq++}`, reserveTokens: 10, limits, clientIp: null })

/** Admits a request at `at` and ends it at `endsAt` with `reason`. */
function request(ledger: Ledger, at: number, endsAt: number, reason: EndReason | null = 'request_too_slow'): void {
  const input = ask()
  expect(ledger.admit(input, at).admitted).toBe(true)
  expect(ledger.settle(input.leaseId, nothing, endsAt, reason)).toBe(true)
}

/** Two requests admitted at `at` that end too slow at `at + 3000` and `at + 3001`: a pause from `at + 3001`. */
function twoStrikes(ledger: Ledger, at: number): number {
  request(ledger, at, at + 3_000)
  request(ledger, at, at + 3_001)
  return at + 3_001
}

/** How long the key is still paused at `now` (0: admitted), asked with a probe that is settled at once. */
function pausedFor(ledger: Ledger, now: number): number {
  const input = ask()
  const decision = ledger.admit(input, now)
  if (decision.admitted) {
    ledger.settle(input.leaseId, nothing, now)
    return 0
  }
  expect(decision).toMatchObject({ limit: 'slow_requests' })
  return decision.retryAfterMs
}

describe('the pause for slow requests', () => {
  it('pauses the key for PAUSE_MS after two request_too_slow endings: every request refused, Retry-After the time left', () => {
    const ledger = new Ledger()
    const from = twoStrikes(ledger, 0)
    expect(ledger.admit(ask(), from)).toMatchObject({ admitted: false, limit: 'slow_requests', retryAfterMs: PAUSE_MS })
    expect(pausedFor(ledger, from + 4_000)).toBe(PAUSE_MS - 4_000)
    expect(ledger.status(limits, from).totals.refused.slow_requests).toBe(2)
  })

  it('does not pause for one slow request', () => {
    const ledger = new Ledger()
    request(ledger, 0, 3_000)
    expect(pausedFor(ledger, 3_001)).toBe(0)
  })

  it('counts only the slow endings within SLOW_WINDOW_MS of each other', () => {
    const ledger = new Ledger()
    request(ledger, 0, 1_000)
    request(ledger, 1_000 + SLOW_WINDOW_MS - 3_000, 1_000 + SLOW_WINDOW_MS)
    expect(pausedFor(ledger, 1_000 + SLOW_WINDOW_MS)).toBe(0)
    // The second and a third are within a minute.
    request(ledger, 1_000 + SLOW_WINDOW_MS, 1_000 + SLOW_WINDOW_MS + 10_000)
    expect(pausedFor(ledger, 1_000 + SLOW_WINDOW_MS + 10_000)).toBe(PAUSE_MS)
  })

  it('admits again once the pause is over', () => {
    const ledger = new Ledger()
    const from = twoStrikes(ledger, 0)
    expect(pausedFor(ledger, from + PAUSE_MS - 1)).toBe(1)
    expect(pausedFor(ledger, from + PAUSE_MS)).toBe(0)
  })

  it('doubles each pause that follows the previous one within PAUSE_RESET_MS, up to PAUSE_MAX_MS, and starts over after', () => {
    const ledger = new Ledger()
    const lengths: number[] = []
    let now = 0
    for (let i = 0; i < 5; i++) {
      const from = twoStrikes(ledger, now)
      lengths.push(pausedFor(ledger, from))
      now = from + (lengths.at(-1) ?? 0)
    }
    expect(lengths).toEqual([PAUSE_MS, 2 * PAUSE_MS, 4 * PAUSE_MS, PAUSE_MAX_MS, PAUSE_MAX_MS])
    // A pause within PAUSE_RESET_MS of the last one's end keeps doubling; one after it does not.
    const late = twoStrikes(ledger, now + PAUSE_RESET_MS - 3_001)
    expect(pausedFor(ledger, late)).toBe(PAUSE_MAX_MS)
    const fresh = twoStrikes(ledger, late + PAUSE_MAX_MS + PAUSE_RESET_MS)
    expect(pausedFor(ledger, fresh)).toBe(PAUSE_MS)
  })

  it('counts no other ending, nor a settlement without a reason', () => {
    const ledger = new Ledger()
    for (const reason of END_REASONS.filter((r) => r !== 'request_too_slow')) {
      request(ledger, 0, 1, reason)
      request(ledger, 0, 2, reason)
    }
    request(ledger, 0, 3, null)
    request(ledger, 0, 4, null)
    expect(pausedFor(ledger, 5)).toBe(0)
    expect(ledger.status(limits, 5).view.mayPause).toBe(false)
  })

  it('counts a lease once, however often it is settled', () => {
    const ledger = new Ledger()
    const input = ask()
    ledger.admit(input, 0)
    expect(ledger.settle(input.leaseId, nothing, 1, 'request_too_slow')).toBe(true)
    expect(ledger.settle(input.leaseId, nothing, 2, 'request_too_slow')).toBe(false)
    expect(pausedFor(ledger, 3)).toBe(0)
  })

  it('does not let the requests in flight when the pause began prolong it or start the next', () => {
    const ledger = new Ledger()
    const inFlight = [ask(), ask(), ask()]
    for (const input of inFlight) ledger.admit(input, 0)
    const from = twoStrikes(ledger, 0)
    for (const input of inFlight) ledger.settle(input.leaseId, nothing, from + 1_000, 'request_too_slow')
    expect(pausedFor(ledger, from + 1_000)).toBe(PAUSE_MS - 1_000)
    expect(pausedFor(ledger, from + PAUSE_MS)).toBe(0)
  })

  it('tells the isolate that a pause may come (one slow ending, or a recent pause), and the isolate then does not speculate', () => {
    const ledger = new Ledger()
    request(ledger, 0, 1_000)
    const view = ledger.status(limits, 1_000).view
    expect(view.mayPause).toBe(true)
    rememberDecision('key_may_pause', true, view)
    expect(claimHeadroom('key_may_pause', 10)).toBeNull()
    rememberDecision('key_may_pause', true, { ...view, mayPause: false })
    expect(claimHeadroom('key_may_pause', 10)).not.toBeNull()
    // The strike leaves the window; a pause keeps the flag for PAUSE_RESET_MS after its end.
    expect(ledger.status(limits, 1_000 + SLOW_WINDOW_MS).view.mayPause).toBe(false)
    const paused = new Ledger()
    const from = twoStrikes(paused, 0)
    expect(paused.status(limits, from + PAUSE_MS + PAUSE_RESET_MS).view.mayPause).toBe(true)
    expect(paused.status(limits, from + PAUSE_MS + PAUSE_RESET_MS + 1).view.mayPause).toBe(false)
  })

  it('writes the strikes and the pause to its store: a ledger rebuilt from it is still paused', () => {
    const saved = new Map<string, unknown>()
    const store: LedgerStore = {
      saveCharge: () => {},
      dropCharge: () => {},
      saveLease: () => {},
      dropLease: () => {},
      saveTotals: (totals) => saved.set('totals', structuredClone(totals)),
      saveSlow: (state) => saved.set('slow', structuredClone(state)),
    }
    const ledger = new Ledger({}, store)
    request(ledger, 0, 1_000)
    expect(saved.get('slow')).toEqual({ strikes: [1_000], pause: null })
    request(ledger, 0, 2_000)
    expect(saved.get('slow')).toEqual({ strikes: [], pause: { from: 2_000, until: 2_000 + PAUSE_MS } })
    const rebuilt = new Ledger({ slow: saved.get('slow') as SlowState })
    expect(pausedFor(rebuilt, 3_000)).toBe(PAUSE_MS - 1_000)
  })

  it('counts its refusals in totals stored before the pause existed', () => {
    const refused = { requests: 1, tokens: 0, concurrent_streams: 0, concurrent_streams_per_ip: 0 }
    const stored = { admitted: 1, refused, promptTokens: 0, completionTokens: 0, expiredLeases: 0 }
    const ledger = new Ledger({ totals: stored as unknown as UsageTotals })
    twoStrikes(ledger, 0)
    ledger.admit(ask(), 3_002)
    expect(ledger.status(limits, 3_002).totals.refused).toEqual({ ...refused, slow_requests: 1, budget_day: 0, budget_month: 0 })
  })
})

describe('the key limiter', () => {
  it('keeps the pause in storage: an object restarted on it still refuses the key', async () => {
    const key = await keyWithLimits({})
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    for (const leaseId of ['slow-1', 'slow-2']) {
      expect((await limiter.admit({ leaseId, reserveTokens: 10, limits, clientIp: null })).admitted).toBe(true)
      expect(await limiter.settle(leaseId, nothing, 'request_too_slow')).toBe(true)
    }
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 100))
    const decision = await runInDurableObject(limiter, (_instance: KeyLimiter, state) =>
      new KeyLimiter(state, env).admit({ leaseId: 'after-restart', reserveTokens: 10, limits, clientIp: null }),
    )
    expect(decision).toMatchObject({ admitted: false, limit: 'slow_requests' })
    expect(decision.admitted === false && 'retryAfterMs' in decision && decision.retryAfterMs).toBeGreaterThan(PAUSE_MS - 2_000)
  })
})
