// Token budgets per UTC day and month (src/limits/budget.ts), in the key's ledger and limiter and
// through the Worker: reserved before, settled after, exact under concurrency up to one request's
// reservation; periods that roll over at UTC midnight and on the first of the month; the usage
// history per day; the 429 and the x-budget-* headers; no speculation past a budget.
import { env } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import fc from 'fast-check'
import { describe, expect, it, vi } from 'vitest'
import { FLUSH_MS, KeyLimiter } from '../../src/durable/key-limiter.ts'
import { DAY_MS, HISTORY_DAYS, periodBounds, UsageDays, type DayUsage, type UsageDayStore } from '../../src/limits/budget.ts'
import { REPORT_CHANGE_MS, REPORT_EVERY_MS, reportDelay, type ReportedState } from '../../src/limits/budget-report.ts'
import { rateLimitHeaders } from '../../src/limits/headers.ts'
import { claimHeadroom, rememberDecision } from '../../src/limits/headroom.ts'
import { Ledger, type AdmitInput, type EffectiveLimits, type LedgerStore } from '../../src/limits/ledger.ts'
import { keyWithLimits, limiterState } from '../support/limits.ts'
import { chatBody, postChat } from '../support/worker.ts'

const ROOMY = { requestsPerMinute: 1_000_000, tokensPerMinute: 1_000_000_000, concurrentStreams: 100_000, concurrentStreamsPerIp: null }
const budgets = (budget: { budgetDay?: number | null; budgetMonth?: number | null }): EffectiveLimits => ({ ...ROOMY, ...budget })
let seq = 0
const ask = (limits: EffectiveLimits, reserveTokens: number): AdmitInput => ({
  leaseId: `lease-${seq++}`,
  reserveTokens,
  limits,
  clientIp: null,
})
const used = (tokens: number) => ({ promptTokens: 0, completionTokens: tokens })

/** 2026-12-08T00:00:00Z, a UTC midnight; and the first of a month. */
const MIDNIGHT = Date.UTC(2026, 11, 8)
const NEW_YEAR = Date.UTC(2027, 0, 1)
const HOUR = 3_600_000

describe('a token budget in the ledger', () => {
  it('admits while the settled tokens and the reservations in flight are below the budget, so only the last one admitted can pass it', () => {
    const ledger = new Ledger()
    const day = budgets({ budgetDay: 1_000 })
    const now = MIDNIGHT - 3 * HOUR
    expect(ledger.admit(ask(day, 400), now)).toMatchObject({
      admitted: true,
      view: { budgets: [{ period: 'day', limit: 1_000, used: 400, remaining: 600, resetsAt: MIDNIGHT }] },
    })
    expect(ledger.admit(ask(day, 400), now).admitted).toBe(true)
    // 800 < 1000: admitted, and its reservation takes the day to 1200.
    expect(ledger.admit(ask(day, 400), now)).toMatchObject({ admitted: true, view: { budgets: [{ used: 1_200, remaining: 0 }] } })
    expect(ledger.admit(ask(day, 1), now)).toMatchObject({
      admitted: false,
      limit: 'budget_day',
      limitValue: 1_000,
      used: 1_200,
      requested: 1,
      retryAfterMs: 3 * HOUR,
    })
    expect(ledger.status(day, now).totals.refused.budget_day).toBe(1)
  })

  it('gives back the unused part of a reservation when the request settles, and admits again', () => {
    const ledger = new Ledger()
    const day = budgets({ budgetDay: 1_000 })
    const first = ask(day, 900)
    ledger.admit(first, 0)
    ledger.admit(ask(day, 900), 0)
    expect(ledger.admit(ask(day, 1), 1)).toMatchObject({ admitted: false, limit: 'budget_day', used: 1_800 })
    ledger.settle(first.leaseId, { promptTokens: 20, completionTokens: 30 }, 2)
    expect(ledger.status(day, 3).budgets).toEqual([{ period: 'day', limit: 1_000, used: 950, remaining: 50, resetsAt: DAY_MS }])
    expect(ledger.admit(ask(day, 1), 3).admitted).toBe(true)
  })

  it('never lets concurrent requests together settle more than the budget plus the last admitted reservation (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5_000 }),
        fc.array(
          fc.record({
            reserve: fc.integer({ min: 1, max: 2_000 }),
            // What it really used, as a share of its reservation; settled at once or left in flight.
            share: fc.double({ min: 0, max: 1, noNaN: true }),
            settleNow: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (budget, steps) => {
          const ledger = new Ledger()
          const day = budgets({ budgetDay: budget })
          const inFlight: { leaseId: string; tokens: number }[] = []
          let settled = 0
          let lastReserve = 0
          for (const step of steps) {
            const input = ask(day, step.reserve)
            if (!ledger.admit(input, 1_000).admitted) continue
            lastReserve = step.reserve
            const tokens = Math.floor(step.reserve * step.share)
            if (step.settleNow) {
              ledger.settle(input.leaseId, used(tokens), 1_000)
              settled += tokens
            } else inFlight.push({ leaseId: input.leaseId, tokens })
          }
          for (const lease of inFlight) {
            ledger.settle(lease.leaseId, used(lease.tokens), 2_000)
            settled += lease.tokens
          }
          expect(settled).toBeLessThan(budget + Math.max(1, lastReserve))
          expect(ledger.status(day, 2_000).budgets[0]?.used).toBe(settled)
        },
      ),
      { numRuns: 300 },
    )
  })

  it('starts the new day whole at UTC midnight: requests in flight settle into the day that admitted them', () => {
    const ledger = new Ledger()
    const day = budgets({ budgetDay: 1_000 })
    const late = ask(day, 900)
    ledger.admit(late, MIDNIGHT - 1_000)
    ledger.admit(ask(day, 200), MIDNIGHT - 500)
    expect(ledger.admit(ask(day, 1), MIDNIGHT - 1)).toMatchObject({ admitted: false, limit: 'budget_day', retryAfterMs: 1 })
    expect(ledger.admit(ask(day, 500), MIDNIGHT)).toMatchObject({
      admitted: true,
      view: { budgets: [{ period: 'day', used: 500, remaining: 500, resetsAt: MIDNIGHT + DAY_MS }] },
    })
    ledger.settle(late.leaseId, { promptTokens: 100, completionTokens: 500 }, MIDNIGHT + 10_000)
    expect(ledger.status(day, MIDNIGHT + 10_000).budgets[0]?.used).toBe(500)
    expect(ledger.usageHistory(2, MIDNIGHT + 10_000)).toEqual([
      { date: '2026-12-07', requests: 1, promptTokens: 100, completionTokens: 500 },
    ])
  })

  it('counts the whole calendar month for a month budget, and starts the next month whole on the first (UTC)', () => {
    const ledger = new Ledger()
    const month = budgets({ budgetMonth: 10_000 })
    const early = ask(month, 6_000)
    ledger.admit(early, Date.UTC(2026, 11, 2, 12))
    ledger.settle(early.leaseId, used(6_000), Date.UTC(2026, 11, 2, 12, 5))
    const lastMinute = NEW_YEAR - 60_000
    const open = ask(month, 5_000)
    expect(ledger.admit(open, lastMinute)).toMatchObject({ admitted: true, view: { budgets: [{ period: 'month', used: 11_000 }] } })
    expect(ledger.admit(ask(month, 1), lastMinute)).toMatchObject({
      admitted: false,
      limit: 'budget_month',
      limitValue: 10_000,
      retryAfterMs: 60_000,
    })
    expect(ledger.admit(ask(month, 100), NEW_YEAR)).toMatchObject({
      admitted: true,
      view: { budgets: [{ period: 'month', used: 100, resetsAt: Date.UTC(2027, 1, 1) }] },
    })
    ledger.settle(open.leaseId, used(3_000), NEW_YEAR + 5_000)
    expect(ledger.status(month, NEW_YEAR + 5_000).budgets[0]?.used).toBe(100)
    expect(ledger.usageHistory(31, NEW_YEAR + 5_000).map((row) => row.date)).toEqual(['2026-12-02', '2026-12-31'])
  })

  it('refuses on the budget that resets last when both are spent, and reports both, month first', () => {
    const ledger = new Ledger()
    const both = budgets({ budgetDay: 100, budgetMonth: 100 })
    ledger.admit(ask(both, 200), MIDNIGHT - HOUR)
    const refused = ledger.admit(ask(both, 1), MIDNIGHT - HOUR)
    expect(refused).toMatchObject({ admitted: false, limit: 'budget_month', retryAfterMs: NEW_YEAR - (MIDNIGHT - HOUR) })
    expect(refused.view.budgets?.map((budget) => budget.period)).toEqual(['month', 'day'])
    // Only the day spent: the day refuses.
    const roomyMonth = budgets({ budgetDay: 100, budgetMonth: 1_000 })
    expect(ledger.admit(ask(roomyMonth, 1), MIDNIGHT - HOUR)).toMatchObject({ admitted: false, limit: 'budget_day', retryAfterMs: HOUR })
  })

  it('refuses on a spent budget before any other limit: a key at its stream limit hears it must wait for the period', () => {
    const ledger = new Ledger()
    const tight = { ...budgets({ budgetDay: 10 }), concurrentStreams: 1 }
    ledger.admit(ask(tight, 50), 0)
    expect(ledger.admit(ask(tight, 1), 1)).toMatchObject({ admitted: false, limit: 'budget_day' })
  })

  it('has no budget, and says none, for a key without one: the view carries no budgets', () => {
    const ledger = new Ledger()
    for (const none of [ROOMY, budgets({ budgetDay: null, budgetMonth: null })]) {
      const decision = ledger.admit(ask(none, 1_000_000), 0)
      expect(decision.admitted).toBe(true)
      expect(decision.view).not.toHaveProperty('budgets')
      expect(ledger.status(none, 0).budgets).toEqual([])
    }
  })

  it('frees the reservation of a lease whose Worker never settled it, and counts nothing for it', () => {
    const ledger = new Ledger()
    const day = budgets({ budgetDay: 1_000 })
    ledger.admit(ask(day, 5_000), 0)
    expect(ledger.admit(ask(day, 1), 1).admitted).toBe(false)
    expect(ledger.admit(ask(day, 1), 15 * 60_000).admitted).toBe(true)
    expect(ledger.usageHistory(1, 15 * 60_000)).toEqual([])
  })

  it('knows the periods: UTC days, and months of 28 to 31 days across a year', () => {
    expect(periodBounds('day', MIDNIGHT - 1)).toEqual({ start: MIDNIGHT - DAY_MS, end: MIDNIGHT })
    expect(periodBounds('month', Date.UTC(2028, 1, 29, 23))).toEqual({ start: Date.UTC(2028, 1, 1), end: Date.UTC(2028, 2, 1) })
    expect(periodBounds('month', Date.UTC(2026, 11, 31, 23, 59))).toEqual({ start: Date.UTC(2026, 11, 1), end: NEW_YEAR })
    expect(periodBounds('month', NEW_YEAR)).toEqual({ start: NEW_YEAR, end: Date.UTC(2027, 1, 1) })
  })
})

describe('the usage history', () => {
  function recordingStore() {
    const writes: string[] = []
    const store: LedgerStore = {
      saveCharge: () => {},
      dropCharge: () => {},
      saveLease: () => {},
      dropLease: () => {},
      saveTotals: () => {},
      saveSlow: () => {},
      saveDay: (date, usage) => writes.push(`day ${date} ${usage.requests}/${usage.promptTokens}/${usage.completionTokens}`),
      dropDay: (date) => writes.push(`drop day ${date}`),
      saveHour: () => writes.push('hour'),
      dropHour: () => writes.push('drop hour'),
      saveFirstHour: () => writes.push('first hour'),
    }
    return { writes, store }
  }

  it('writes one day row and one hour row per settled request, the row of the day it was admitted in', () => {
    const { writes, store } = recordingStore()
    const ledger = new Ledger({ firstHour: 0 }, store)
    const input = ask(ROOMY, 100)
    ledger.admit(input, MIDNIGHT - 1)
    expect(writes).toEqual([])
    ledger.settle(input.leaseId, { promptTokens: 12, completionTokens: 34 }, MIDNIGHT + 1)
    expect(writes).toEqual(['day 2026-12-07 1/12/34', 'hour'])
  })

  it('answers the last N days oldest first, leaving out days without use', () => {
    const ledger = new Ledger()
    for (const [day, tokens] of [
      [-3, 5],
      [-1, 7],
      [0, 11],
    ] as const) {
      const input = ask(ROOMY, 100)
      ledger.admit(input, MIDNIGHT + day * DAY_MS + HOUR)
      ledger.settle(input.leaseId, used(tokens), MIDNIGHT + day * DAY_MS + HOUR)
    }
    const now = MIDNIGHT + HOUR
    expect(ledger.usageHistory(3, now)).toEqual([
      { date: '2026-12-07', requests: 1, promptTokens: 0, completionTokens: 7 },
      { date: '2026-12-08', requests: 1, promptTokens: 0, completionTokens: 11 },
    ])
    expect(ledger.usageHistory(4, now).map((row) => row.date)).toEqual(['2026-12-05', '2026-12-07', '2026-12-08'])
    expect(ledger.usageHistory(1, now)).toHaveLength(1)
  })

  it(`keeps ${HISTORY_DAYS} days and deletes older rows when a new day is written`, () => {
    const writes: string[] = []
    const store: UsageDayStore = {
      saveDay: (date, usage) => writes.push(`day ${date} ${usage.requests}/${usage.promptTokens}/${usage.completionTokens}`),
      dropDay: (date) => writes.push(`drop day ${date}`),
    }
    const today = Math.floor(MIDNIGHT / DAY_MS)
    const row: DayUsage = { requests: 1, promptTokens: 1, completionTokens: 1 }
    const days = new UsageDays(
      new Map([
        [today - HISTORY_DAYS, row],
        [today - HISTORY_DAYS + 1, row],
      ]),
      store,
    )
    days.add(MIDNIGHT, { promptTokens: 1, completionTokens: 2 })
    expect(writes).toEqual(['day 2026-12-08 1/1/2', 'drop day 2025-11-03'])
    expect(days.history(HISTORY_DAYS, MIDNIGHT).map((day) => day.date)).toEqual(['2025-11-04', '2026-12-08'])
    expect(days.history(10_000, MIDNIGHT)).toHaveLength(2)
  })
})

describe('budgets in the headers and in speculative admission', () => {
  const view = (remaining: number, limit = 1_000_000) => ({
    requests: { limit: 1_000, remaining: 1_000, resetMs: 0 },
    tokens: { limit: 100_000, remaining: 100_000, resetMs: 0 },
    streams: { limit: 100, remaining: 100 },
    mayPause: false,
    budgets: [{ period: 'day' as const, limit, used: limit - remaining, remaining, resetsAt: MIDNIGHT }],
  })

  it('sends the limit, what remains and the reset time of each budget beside the x-ratelimit headers', () => {
    const month = { period: 'month' as const, limit: 5_000_000, used: 10, remaining: 4_999_990, resetsAt: NEW_YEAR }
    const headers = rateLimitHeaders({ ...view(600, 1_000), budgets: [month, ...view(600, 1_000).budgets] })
    expect(headers).toMatchObject({
      'x-budget-limit-day': '1000',
      'x-budget-remaining-day': '600',
      'x-budget-reset-day': '2026-12-08T00:00:00Z',
      'x-budget-limit-month': '5000000',
      'x-budget-remaining-month': '4999990',
      'x-budget-reset-month': '2027-01-01T00:00:00Z',
    })
    const { requests, tokens } = view(600)
    expect(Object.keys(rateLimitHeaders({ requests, tokens })).filter((name) => name.startsWith('x-budget'))).toEqual([])
  })

  it('does not speculate when a budget has less left than the per-minute limit could take before the answer', () => {
    // Plenty left: a quarter of the budget is more than the tokens per minute (100k), so 100k is the margin.
    rememberDecision('key_budget_roomy', true, view(500_000))
    expect(claimHeadroom('key_budget_roomy', 1_000)).not.toBeNull()
    rememberDecision('key_budget_low', true, view(100_500))
    expect(claimHeadroom('key_budget_low', 1_000)).toBeNull()
    // A small budget: a quarter of it is the margin.
    rememberDecision('key_budget_small', true, view(3_000, 10_000))
    expect(claimHeadroom('key_budget_small', 500)).not.toBeNull()
    expect(claimHeadroom('key_budget_small', 500)).toBeNull()
  })
})

describe('reports to the board', () => {
  const state = (at: number, changes: Partial<ReportedState> = {}): ReportedState => ({
    at,
    budgeted: true,
    spent: false,
    flagged: false,
    ...changes,
  })

  it('reports a budgeted or flagged key at most every 10 s, a change within 1 s, and a key with neither never', () => {
    expect(reportDelay(null, state(0))).toBe(0)
    expect(reportDelay(null, state(0, { budgeted: false }))).toBeNull()
    expect(reportDelay(null, state(0, { budgeted: false, flagged: true }))).toBe(0)
    expect(reportDelay(state(0), state(REPORT_EVERY_MS - 1))).toBeNull()
    expect(reportDelay(state(0), state(REPORT_EVERY_MS))).toBe(0)
    expect(reportDelay(state(0, { budgeted: false }), state(REPORT_EVERY_MS * 10, { budgeted: false }))).toBeNull()
    expect(reportDelay(state(0), state(200, { spent: true }))).toBe(REPORT_CHANGE_MS - 200)
    expect(reportDelay(state(0), state(REPORT_CHANGE_MS, { flagged: true }))).toBe(0)
    expect(reportDelay(state(0), state(REPORT_CHANGE_MS, { budgeted: false }))).toBe(0)
  })
})

interface ErrorBody {
  error: { message: string; type: string; code: string }
}

const short = '[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

describe('token budgets on POST /v1/chat/completions', () => {
  it('refuses a request its budget cannot cover: 429 budget_exceeded naming the period and its reset, Retry-After until then', async () => {
    const key = await keyWithLimits({ budgetDay: 1 })
    const admitted = await postChat(chatBody(short), { secret: key.secret })
    expect(admitted.status).toBe(200)
    const midnight = new Date(Math.floor(Date.now() / DAY_MS + 1) * DAY_MS).toISOString().replace('.000Z', 'Z')
    expect(admitted.headers.get('x-budget-limit-day')).toBe('1')
    expect(admitted.headers.get('x-budget-remaining-day')).toBe('0')
    expect(admitted.headers.get('x-budget-reset-day')).toBe(midnight)
    expect(admitted.headers.get('x-budget-limit-month')).toBeNull()
    await admitted.text()

    const refused = await postChat(chatBody(short), { secret: key.secret })
    expect(refused.status).toBe(429)
    const { error } = (await refused.json()) as ErrorBody
    expect(error).toMatchObject({ type: 'budget', code: 'budget_exceeded' })
    expect(error.message).toMatch(
      new RegExp(
        `^Token budget reached for ${key.id} for the day \\(UTC\\): Limit 1, Used \\d+, Requested \\d+\\. It resets at ${midnight}; please try again in \\d+s\\.$`,
      ),
    )
    const untilMidnight = (Date.parse(midnight) - Date.now()) / 1000
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(Math.floor(untilMidnight) - 5)
    expect(Number(refused.headers.get('retry-after'))).toBeLessThanOrEqual(Math.ceil(untilMidnight) + 1)
    expect(Number(refused.headers.get('retry-after-ms'))).toBeGreaterThan(0)
    expect(refused.headers.get('x-budget-reset-day')).toBe(midnight)
    expect(refused.headers.get('x-budget-remaining-day')).toBe('0')
    expect(refused.headers.get('x-ratelimit-limit-requests')).not.toBeNull()
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    expect((await limiterState(key.id)).usage.totals.refused).toMatchObject({ budget_day: 1 })
  })

  it('holds a budget under 30 concurrent requests: they settle less than the budget plus one reservation', async () => {
    const key = await keyWithLimits({ budgetMonth: 2_000 })
    const body = chatBody(`${short} Say hi.`, { max_tokens: 300 })
    const responses = await Promise.all(Array.from({ length: 30 }, () => postChat(body, { secret: key.secret })))
    const refused = responses.filter((r) => r.status === 429)
    const first = (await refused[0]!.json()) as ErrorBody
    expect(first.error.code).toBe('budget_exceeded')
    const reserve = Number(/Requested (\d+)\./.exec(first.error.message)?.[1])
    expect(reserve).toBeGreaterThan(300)
    // Admitted while the reservations so far were below 2000: the last one may pass it.
    expect(responses.filter((r) => r.status === 200)).toHaveLength(Math.ceil(2_000 / reserve))
    await Promise.all(responses.map((r) => (r.bodyUsed ? null : r.body?.cancel())))
    await vi.waitFor(async () => expect((await limiterState(key.id)).usage.in_flight).toBe(0))
    const { totals } = (await limiterState(key.id)).usage
    expect(totals.prompt_tokens + totals.completion_tokens).toBeLessThan(2_000 + reserve)
    expect(totals.refused).toMatchObject({ budget_month: 30 - Math.ceil(2_000 / reserve) })
  })

  it('sends no x-budget header for a key without a budget', async () => {
    const key = await keyWithLimits({})
    const response = await postChat(chatBody(short), { secret: key.secret })
    expect(response.status).toBe(200)
    expect([...response.headers.keys()].filter((name) => name.startsWith('x-budget'))).toEqual([])
    await response.text()
  })
})

describe('the key limiter', () => {
  const limits = budgets({ budgetDay: 100_000, budgetMonth: 1_000_000 })

  it('keeps the day rows and the reservations in flight in storage: a limiter restarted on them counts the same', async () => {
    const key = await keyWithLimits({})
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    expect((await limiter.admit({ leaseId: 'held', reserveTokens: 5_000, limits, clientIp: null, keyId: key.id })).admitted).toBe(true)
    expect((await limiter.admit({ leaseId: 'done', reserveTokens: 800, limits, clientIp: null, keyId: key.id })).admitted).toBe(true)
    expect(await limiter.settle('done', { promptTokens: 30, completionTokens: 70 })).toBe(true)
    await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 100))
    const restarted = await runInDurableObject(limiter, (_instance: KeyLimiter, state) => {
      const fresh = new KeyLimiter(state, env)
      return { status: fresh.status(limits), history: fresh.usageHistory(1) }
    })
    expect(restarted.status.budgets.map((budget) => [budget.period, budget.used])).toEqual([
      ['month', 5_100],
      ['day', 5_100],
    ])
    expect(restarted.history).toEqual([
      { date: new Date().toISOString().slice(0, 10), requests: 1, promptTokens: 30, completionTokens: 70 },
    ])
    expect(restarted.status.spike).toEqual({ flagged: false, hourTokens: 100, normalTokens: 0 })
  })

  it('writes one day row and one hour row per flush, however many requests the flush settles', async () => {
    const key = await keyWithLimits({})
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    const written = await runInDurableObject(limiter, async (instance: KeyLimiter, state) => {
      const put = vi.spyOn(state.storage.kv, 'put')
      for (let i = 0; i < 10; i++) {
        instance.admit({ leaseId: `burst-${i}`, reserveTokens: 100, limits, clientIp: null, keyId: key.id })
        instance.settle(`burst-${i}`, { promptTokens: 10, completionTokens: 20 })
      }
      await new Promise((resolve) => setTimeout(resolve, FLUSH_MS + 100))
      const keys = put.mock.calls.map(([name]) => name)
      put.mockRestore()
      return keys.filter((name) => name.startsWith('u:') || name.startsWith('h:') || name === 'hfirst')
    })
    // The day's row, the hour's row, and (a key's first tokens) the hour of its first use.
    expect(written.map((name) => name.slice(0, 2)).sort()).toEqual(['h:', 'hf', 'u:'])
    expect(await limiter.usageHistory(400)).toEqual([
      { date: new Date().toISOString().slice(0, 10), requests: 10, promptTokens: 100, completionTokens: 200 },
    ])
  })
})
