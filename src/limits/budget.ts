// A key's token budgets per UTC day and per calendar month (UTC), decided in its ledger
// (src/limits/ledger.ts) on the same limiter call as its per-minute limits: no extra round trip.
// Pure: the periods, the settled usage per UTC day (which is also the key's usage history), and
// the rule.
//
// The rule: a request is admitted while the period's settled tokens plus the reservations of the
// requests still in flight that were admitted in the period are below the budget. Each request
// reserves its most possible use (prompt estimate plus max output) and settles with what the
// backend reported. So only the last request admitted can take the period past its budget, and
// the key's requests together never pass it by more than that request's reservation: when it was
// admitted, everything admitted before it was counted at its reservation or its real use (less),
// and nothing is admitted after it. Bound: settled tokens of the period < budget + one request's
// reservation. (The reservation's prompt part is an estimate, src/schema/token-estimate.ts: a
// request with max_tokens whose real prompt is larger than its estimate can settle above its
// reservation by that difference; one without max_tokens reserves the whole context, which it can
// never exceed.)
//
// Periods: a request counts in the UTC day and the month it was admitted in, reservation and
// settlement alike. A request in flight over midnight (or over the first of a month) settles into
// the period that admitted it, so the new period starts whole, and the old one keeps its bound.

import type { BudgetPeriod, BudgetState, UsageDay } from './key-report.ts'

export const DAY_MS = 86_400_000
/** Days of usage history a limiter keeps; older rows are deleted as new days are written. */
export const HISTORY_DAYS = 400

/** A key's budgets, in tokens (prompt plus output); null: none for the period. */
export interface BudgetLimits {
  day: number | null
  month: number | null
}

/** A UTC day as a number: days since 1970-01-01. */
export function dayNumber(ms: number): number {
  return Math.floor(ms / DAY_MS)
}

/** YYYY-MM-DD of a day number. */
export function isoDate(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10)
}

/** The day number of a YYYY-MM-DD date, or null when it is not one. */
export function dayOfDate(date: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return null
  const ms = Date.parse(`${date}T00:00:00Z`)
  return Number.isNaN(ms) ? null : dayNumber(ms)
}

/** Unix ms of the start of the period holding `ms`, and of the next one. */
export function periodBounds(period: BudgetPeriod, ms: number): { start: number; end: number } {
  if (period === 'day') {
    const start = dayNumber(ms) * DAY_MS
    return { start, end: start + DAY_MS }
  }
  const date = new Date(ms)
  const year = date.getUTCFullYear()
  const month = date.getUTCMonth()
  return { start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) }
}

/** A budget value as a record may hold it: a whole number of tokens >= 0; anything else is no budget. */
export function budgetValue(value: unknown): number | null {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : null
}

/** One UTC day of settled usage, in memory. */
export interface DayUsage {
  requests: number
  promptTokens: number
  completionTokens: number
}

/** Where the day rows go: the limiter's storage (`u:YYYY-MM-DD`). */
export interface UsageDayStore {
  saveDay(date: string, usage: DayUsage): void
  dropDay(date: string): void
}

/**
 * The settled usage of a key per UTC day, for HISTORY_DAYS days: what the budgets count as settled
 * and what `usageHistory` answers. One row per day with use.
 */
export class UsageDays {
  #days: Map<number, DayUsage>
  #store: UsageDayStore | null
  /** The newest day pruned for: older rows were dropped when this day was first written. */
  #prunedFor = Number.NEGATIVE_INFINITY

  constructor(days: ReadonlyMap<number, DayUsage> = new Map(), store: UsageDayStore | null = null) {
    this.#days = new Map(days)
    this.#store = store
  }

  /** Adds one settled request to the day it was admitted in (`admittedAt`). */
  add(admittedAt: number, used: Omit<DayUsage, 'requests'>): void {
    const day = dayNumber(admittedAt)
    const row = this.#days.get(day) ?? { requests: 0, promptTokens: 0, completionTokens: 0 }
    row.requests++
    row.promptTokens += used.promptTokens
    row.completionTokens += used.completionTokens
    this.#days.set(day, row)
    this.#store?.saveDay(isoDate(day), { ...row })
    if (day > this.#prunedFor) this.#prune(day)
  }

  /** Settled tokens (prompt plus completion) from day `from` to day `to`, both included. */
  tokens(from: number, to: number): number {
    let sum = 0
    for (let day = from; day <= to; day++) {
      const row = this.#days.get(day)
      if (row) sum += row.promptTokens + row.completionTokens
    }
    return sum
  }

  /**
   * The last `days` UTC days up to the one holding `now`, oldest first; days without a settled
   * request are left out (the route fills them with zeros).
   */
  history(days: number, now: number): UsageDay[] {
    const today = dayNumber(now)
    const count = Math.max(1, Math.min(HISTORY_DAYS, Math.floor(Number.isFinite(days) ? days : 1)))
    const rows: UsageDay[] = []
    for (let day = today - count + 1; day <= today; day++) {
      const row = this.#days.get(day)
      if (row) rows.push({ date: isoDate(day), ...row })
    }
    return rows
  }

  /** Drops the rows that fall out of HISTORY_DAYS once `day` exists. */
  #prune(day: number): void {
    this.#prunedFor = day
    for (const old of this.#days.keys()) {
      if (old > day - HISTORY_DAYS) continue
      this.#days.delete(old)
      this.#store?.dropDay(isoDate(old))
    }
  }
}

/** What a budget check needs of the ledger's requests in flight: when each was admitted and what it reserved. */
export interface Reservation {
  at: number
  reserve: number
}

/**
 * The key's budgets now: for each period that has one, its limit, what is used (settled plus the
 * reservations in flight admitted in the period) and when it resets. Month first, then day.
 */
export function budgetStates(limits: BudgetLimits, days: UsageDays, inFlight: Iterable<Reservation>, now: number): BudgetState[] {
  if (limits.day === null && limits.month === null) return []
  const bounds = { month: periodBounds('month', now), day: periodBounds('day', now) }
  // One pass over the requests in flight (`inFlight` may be a one-shot iterator); a day is within its month.
  const reserved = { month: 0, day: 0 }
  for (const lease of inFlight) {
    if (lease.at < bounds.month.start) continue
    reserved.month += lease.reserve
    if (lease.at >= bounds.day.start) reserved.day += lease.reserve
  }
  const states: BudgetState[] = []
  for (const period of ['month', 'day'] as const) {
    const limit = limits[period]
    if (limit === null) continue
    const { start, end } = bounds[period]
    const used = days.tokens(dayNumber(start), dayNumber(now)) + reserved[period]
    states.push({ period, limit, used, remaining: Math.max(0, limit - used), resetsAt: end })
  }
  return states
}

/** The budget that refuses a request now (used >= limit), the one that resets last; null: none. */
export function spentBudget(states: readonly BudgetState[]): BudgetState | null {
  let spent: BudgetState | null = null
  for (const state of states) if (state.used >= state.limit && (spent === null || state.resetsAt > spent.resetsAt)) spent = state
  return spent
}
