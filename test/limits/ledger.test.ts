import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { LEASE_MAX_MS, Ledger, WINDOW_MS, type AdmitInput, type EffectiveLimits } from '../../src/limits/ledger.ts'

const limits: EffectiveLimits = { requestsPerMinute: 10, tokensPerMinute: 1_000, concurrentStreams: 3, concurrentStreamsPerIp: null }
let seq = 0
const ask = (overrides: Partial<AdmitInput> = {}): AdmitInput => ({
  leaseId: `lease-${seq++}`,
  reserveTokens: 10,
  limits,
  clientIp: null,
  ...overrides,
})
const nothing = { promptTokens: 0, completionTokens: 0 }

describe('Ledger', () => {
  it('admits exactly the requests-per-minute limit, then refuses until the oldest leaves the window', () => {
    const ledger = new Ledger()
    const roomy = { ...limits, concurrentStreams: 100 }
    const decisions = Array.from({ length: 25 }, (_, i) => ledger.admit(ask({ limits: roomy }), 1_000 + i))
    expect(decisions.filter((d) => d.admitted)).toHaveLength(10)
    const refused = decisions[10]
    expect(refused).toMatchObject({ admitted: false, limit: 'requests', limitValue: 10, used: 10 })
    // The first admission (t=1000) leaves the window at 61000.
    expect(refused?.admitted === false && refused.retryAfterMs).toBe(1_000 + WINDOW_MS - 1_010)
    expect(ledger.admit(ask({ limits: roomy }), 1_000 + WINDOW_MS - 1).admitted).toBe(false)
    expect(ledger.admit(ask({ limits: roomy }), 1_000 + WINDOW_MS).admitted).toBe(true)
  })

  it('refuses a stream beyond the concurrency limit and admits again once one is settled', () => {
    const ledger = new Ledger()
    const ids = ['a', 'b', 'c'].map((leaseId) => (ledger.admit(ask({ leaseId }), 0), leaseId))
    expect(ledger.admit(ask(), 1)).toMatchObject({ admitted: false, limit: 'concurrent_streams', used: 3, retryAfterMs: 1_000 })
    expect(ledger.settle(ids[0] ?? '', nothing, 2)).toBe(true)
    expect(ledger.admit(ask(), 3).admitted).toBe(true)
  })

  it('settles a lease once: a second settlement or an unknown lease changes nothing', () => {
    const ledger = new Ledger()
    ledger.admit(ask({ leaseId: 'x', reserveTokens: 500 }), 0)
    expect(ledger.settle('x', { promptTokens: 10, completionTokens: 20 }, 1)).toBe(true)
    expect(ledger.settle('x', { promptTokens: 999, completionTokens: 999 }, 2)).toBe(false)
    expect(ledger.settle('never', nothing, 3)).toBe(false)
    const status = ledger.status(limits, 4)
    expect(status.inFlight).toBe(0)
    expect(status.totals).toMatchObject({ promptTokens: 10, completionTokens: 20, admitted: 1 })
    expect(status.view.tokens.remaining).toBe(1_000 - 30)
  })

  it('reserves tokens before the request runs, so parallel requests cannot overshoot the limit', () => {
    const ledger = new Ledger()
    const roomy = { ...limits, concurrentStreams: 100, requestsPerMinute: 100 }
    const admitted = Array.from({ length: 20 }, () => ledger.admit(ask({ limits: roomy, reserveTokens: 300 }), 0)).filter((d) => d.admitted)
    expect(admitted).toHaveLength(3)
    expect(ledger.admit(ask({ limits: roomy, reserveTokens: 300 }), 0)).toMatchObject({
      admitted: false,
      limit: 'tokens',
      used: 900,
      requested: 300,
    })
  })

  it('gives back the unused part of a reservation when the request settles', () => {
    const ledger = new Ledger()
    ledger.admit(ask({ leaseId: 'big', reserveTokens: 900 }), 0)
    expect(ledger.admit(ask({ reserveTokens: 200 }), 1).admitted).toBe(false)
    ledger.settle('big', { promptTokens: 50, completionTokens: 50 }, 2)
    expect(ledger.admit(ask({ reserveTokens: 200 }), 3).admitted).toBe(true)
  })

  it('says when enough tokens leave the window, and that a request larger than the limit never fits', () => {
    const ledger = new Ledger()
    ledger.admit(ask({ reserveTokens: 400 }), 0)
    ledger.admit(ask({ reserveTokens: 400 }), 5_000)
    const refused = ledger.admit(ask({ reserveTokens: 500 }), 10_000)
    // 800 used; 500 more fits once the first 400 leave (at 60000).
    expect(refused).toMatchObject({ admitted: false, limit: 'tokens', retryAfterMs: WINDOW_MS - 10_000 })
    expect(ledger.admit(ask({ reserveTokens: 1_001 }), 10_000)).toMatchObject({ admitted: false, retryAfterMs: Number.POSITIVE_INFINITY })
  })

  it('limits the streams of one client IP without touching other IPs or API callers', () => {
    const ledger = new Ledger()
    const perIp = { ...limits, concurrentStreams: 10, concurrentStreamsPerIp: 2 }
    expect(ledger.admit(ask({ limits: perIp, clientIp: '198.51.100.1' }), 0).admitted).toBe(true)
    expect(ledger.admit(ask({ limits: perIp, clientIp: '198.51.100.1' }), 0).admitted).toBe(true)
    expect(ledger.admit(ask({ limits: perIp, clientIp: '198.51.100.1' }), 0)).toMatchObject({
      admitted: false,
      limit: 'concurrent_streams_per_ip',
    })
    expect(ledger.admit(ask({ limits: perIp, clientIp: '198.51.100.2' }), 0).admitted).toBe(true)
    expect(ledger.admit(ask({ limits: perIp, clientIp: null }), 0).admitted).toBe(true)
  })

  it('frees the slot of a lease whose Worker never settled it, after LEASE_MAX_MS, and counts it', () => {
    const ledger = new Ledger()
    const one = { ...limits, concurrentStreams: 1 }
    ledger.admit(ask({ limits: one }), 0)
    expect(ledger.admit(ask({ limits: one }), LEASE_MAX_MS - 1).admitted).toBe(false)
    expect(ledger.admit(ask({ limits: one }), LEASE_MAX_MS).admitted).toBe(true)
    expect(ledger.status(one, LEASE_MAX_MS).totals.expiredLeases).toBe(1)
  })

  it('reports OpenAI-style remaining counts and the time until the window is empty', () => {
    const ledger = new Ledger()
    ledger.admit(ask({ reserveTokens: 100 }), 0)
    const decision = ledger.admit(ask({ reserveTokens: 50 }), 20_000)
    expect(decision.view).toEqual({
      requests: { limit: 10, remaining: 8, resetMs: WINDOW_MS },
      tokens: { limit: 1_000, remaining: 850, resetMs: WINDOW_MS },
      streams: { limit: limits.concurrentStreams, remaining: limits.concurrentStreams - 2 },
      mayPause: false,
    })
  })

  it('writes every change to its store, and a ledger rebuilt from the store carries on the same', () => {
    const saved = new Map<string, unknown>()
    const store = {
      saveCharge: (c: { id: string; at: number; tokens: number }) => saved.set(`c:${c.id}`, { ...c }),
      dropCharge: (c: { id: string }) => saved.delete(`c:${c.id}`),
      saveLease: (id: string, lease: { at: number; ip: string | null }) => saved.set(`l:${id}`, { at: lease.at, ip: lease.ip }),
      dropLease: (id: string) => saved.delete(`l:${id}`),
      saveTotals: (t: unknown) => saved.set('totals', structuredClone(t)),
      saveSlow: (state: unknown) => saved.set('slow', structuredClone(state)),
    }
    const ledger = new Ledger({}, store)
    ledger.admit(ask({ leaseId: 'p', reserveTokens: 100 }), 0)
    ledger.admit(ask({ leaseId: 'q', reserveTokens: 100 }), 1)
    ledger.settle('p', { promptTokens: 5, completionTokens: 5 }, 2)
    expect([...saved.keys()].sort()).toEqual(['c:p', 'c:q', 'l:q', 'totals'])
    expect(saved.get('c:p')).toMatchObject({ tokens: 10 })
    ledger.admit(ask({ leaseId: 'r' }), WINDOW_MS + 5)
    expect(saved.has('c:p')).toBe(false)
  })

  it('never lets the tokens charged in any one-minute window exceed the limit (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            gap: fc.integer({ min: 0, max: 20_000 }),
            reserve: fc.integer({ min: 1, max: 600 }),
            // What the request really used, as a share of its reservation; undefined: still running.
            used: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
          }),
          { maxLength: 80 },
        ),
        (steps) => {
          const ledger = new Ledger()
          const roomy = { ...limits, requestsPerMinute: 1_000, concurrentStreams: 1_000 }
          const charged: { at: number; tokens: number }[] = []
          let now = 0
          for (const [i, step] of steps.entries()) {
            now += step.gap
            const leaseId = `p${i}`
            if (!ledger.admit({ leaseId, reserveTokens: step.reserve, limits: roomy, clientIp: null }, now).admitted) continue
            const entry = { at: now, tokens: step.reserve }
            charged.push(entry)
            if (step.used !== undefined) {
              const completionTokens = Math.floor(step.reserve * step.used)
              ledger.settle(leaseId, { promptTokens: 0, completionTokens }, now)
              entry.tokens = completionTokens
            }
            const inWindow = charged.filter((c) => c.at > now - WINDOW_MS).reduce((sum, c) => sum + c.tokens, 0)
            expect(inWindow).toBeLessThanOrEqual(roomy.tokensPerMinute)
            expect(ledger.status(roomy, now).view.tokens.remaining).toBe(roomy.tokensPerMinute - inWindow)
          }
        },
      ),
      { numRuns: 300 },
    )
  })
})
